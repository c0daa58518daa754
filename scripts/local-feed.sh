#!/usr/bin/env bash
# Packs every KVLink package (KVLink.Core, KVLink.Core.Redis, KVLink.Core.Cuda, KVLink.Demo) into a local NuGet feed
# folder and registers it as the NuGet source "kvlink-local" in your user NuGet.Config, so that
# `dotnet add package KVLink.Core --prerelease` works in any project on this machine until the packages are on nuget.org
# (docs/getting-started.md). Run it again after pulling: each run's version is newer, so `--prerelease` picks it and the
# NuGet cache never hands back an older build.
#
#   scripts/local-feed.sh                     # feed in ./artifacts (of the repository), registered as kvlink-local
#   scripts/local-feed.sh --out DIR           # another folder
#   scripts/local-feed.sh --version V         # a fixed version (default <VersionPrefix>-local.<UTC timestamp>)
#   scripts/local-feed.sh --no-register       # only pack (.ci/pack-check.sh packs through this)
#
# Prints the feed folder and version on its last line: "feed <folder> <version>".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/artifacts"
version=""
register=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --no-register) register=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "local-feed.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$version" ]; then
  prefix="$(sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' "$repo/Directory.Build.props")"
  version="${prefix:-0.1.0}-local.$(date -u +%Y%m%d%H%M%S)"
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

packages=(KVLink.Core KVLink.Core.Redis KVLink.Core.Cuda KVLink.Demo KVLink.AspNetCore)
for p in "${packages[@]}"; do
  echo "== pack $p $version" >&2
  dotnet pack "$repo/src/$p" -c Release -o "$out" -p:Version="$version" --nologo -v quiet >&2
done

if [ "$register" = 1 ]; then
  # Added once; a later run finds it (same folder) and leaves it. Other sources (nuget.org) stay as they are.
  if dotnet nuget list source --format short | grep -qF "$out"; then
    echo "== NuGet source $out is already registered" >&2
  else
    dotnet nuget add source "$out" --name kvlink-local >&2 \
      || dotnet nuget update source kvlink-local --source "$out" >&2
  fi
fi
echo "feed $out $version"
