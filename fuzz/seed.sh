#!/usr/bin/env bash
# Seeds each fuzz target's corpus from what the project ships and its test fixtures.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/jobs_file corpus/rule_test_file corpus/access_log_line corpus/template
cp ../jobs/*.yaml ../jobs/examples/*.yaml ../tests/fixtures/invalid/*.yaml corpus/jobs_file/
find ../rules -name '*.test.yaml' -exec cp {} corpus/rule_test_file/ \;
cp ../templates/*.hbs corpus/template/
printf '%s\n' '203.0.113.7 - alice [28/Nov/2026:10:00:00 +0000] "GET /cart HTTP/1.1" 503 1234 "-" "Mozilla/5.0" 0.250 sess-42' > corpus/access_log_line/combined
printf '%s\n' '10.1.1.1 404 1500 s9' > corpus/access_log_line/regex
