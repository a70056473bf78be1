-- Placeholder on the events branch for the lead's 0008 (claim_many takes
-- releases too); the lead's file replaces this one when the branches merge.
SELECT 1;
