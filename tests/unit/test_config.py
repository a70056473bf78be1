"""Settings from the environment, with the original's variables and defaults."""

from __future__ import annotations

import pytest

from flashsale.config import ClaimStrategyName, SettingsError, load_settings, redact_dsn


def test_defaults_match_the_original_design() -> None:
    settings = load_settings({})
    assert settings.app_port == 8080
    assert settings.claim_strategy is ClaimStrategyName.BATCHED
    assert settings.uses_embedded_database
    assert (
        settings.dsn() == "postgresql://postgres:postgres@localhost:5432/coupondb?sslmode=disable"
    )


def test_db_variables_build_the_url_and_turn_the_embedded_server_off() -> None:
    settings = load_settings(
        {
            "DB_HOST": "db",
            "DB_PORT": "6543",
            "DB_USER": "app",
            "DB_PASSWORD": "p@ss:w/rd",
            "DB_NAME": "sales",
            "DB_SSLMODE": "require",
        }
    )
    assert not settings.uses_embedded_database
    assert settings.dsn() == "postgresql://app:p%40ss%3Aw%2Frd@db:6543/sales?sslmode=require"


def test_database_url_wins_over_db_variables() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://x@h/d", "DB_HOST": "other"})
    assert settings.dsn() == "postgresql://x@h/d"


def test_command_line_overrides_win_over_the_environment() -> None:
    settings = load_settings({"APP_PORT": "9000"}, app_port=9100)
    assert settings.app_port == 9100


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APP_PORT", "eighty"),
        ("APP_PORT", "70000"),
        ("CLAIM_STRATEGY", "fast"),
        ("WEB_WORKERS", "0"),
        ("DB_ACQUIRE_TIMEOUT", "-1"),
    ],
)
def test_unusable_values_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_a_password_never_survives_redaction() -> None:
    redacted = redact_dsn("postgresql://app:s3cret@db:5432/x")
    assert "s3cret" not in redacted
    assert redacted == "postgresql://app:***@db:5432/x"


def test_the_embedded_data_folder_is_configurable() -> None:
    assert str(load_settings({"FLASHSALE_DATA_DIR": "/srv/pg"}).data_dir) == "/srv/pg"
