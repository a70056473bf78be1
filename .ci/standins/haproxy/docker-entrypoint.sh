#!/bin/sh
# As the official image's entrypoint: options alone run haproxy with them;
# haproxy runs as master-worker (-W) in the foreground (-db).
set -e
if [ "${1#-}" != "$1" ]; then
    set -- haproxy "$@"
fi
if [ "$1" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi
exec "$@"
