#!/bin/sh
# Runs before the API starts: bring the database schema to head.
set -e
plot db upgrade
