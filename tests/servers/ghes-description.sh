#!/usr/bin/env bash
# ghes-description.sh — GitHub's whole GHES REST description, for Prism: fetched once from the npm registry
# (@octokit/openapi, which publishes github/rest-api-description's descriptions; npm checks its integrity) and
# cached. Prints the path of the JSON file.
#
# Usage:  spec=$(bash ghes-description.sh)
# Settings: GHES_DESCRIPTION_DIR (default ~/.cache/steward-tests/ghes-description).
set -euo pipefail
PACKAGE=@octokit/openapi@23.0.2
FILE=package/generated/ghes-3.19.json
DIR=${GHES_DESCRIPTION_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/steward-tests/ghes-description}
out="$DIR/$(basename "$FILE")"
if [ ! -s "$out" ]; then
  command -v npm >/dev/null || { echo "[ghes-description] needs npm (Node.js), to fetch $PACKAGE" >&2; exit 1; }
  mkdir -p "$DIR"
  tmp=$(mktemp -d "$DIR/fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "[ghes-description] fetching $PACKAGE into $DIR" >&2
  (cd "$tmp" && npm pack -q "$PACKAGE" >/dev/null && tar xzf ./*.tgz "$FILE")
  mv "$tmp/$FILE" "$out.part" && mv "$out.part" "$out"
fi
echo "$out"
