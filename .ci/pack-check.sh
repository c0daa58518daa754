#!/usr/bin/env bash
# Packs KVLink.Core, KVLink.Core.Redis, KVLink.Core.Cuda, KVLink.Demo and KVLink.AspNetCore with a throwaway version into a local folder
# feed (through scripts/local-feed.sh, the command getting-started gives users), checks what each package contains
# (readme, license, project and repository URLs, symbols), then follows docs/getting-started.md's section 1 literally,
# as a new user would: its ```bash block (dotnet new console, dotnet add package ...) runs as written, with KVLink.*
# mapped to the local feed, its ```csharp block becomes Program.cs, and `dotnet run` must answer the snippet's question
# with the city its document names.
# Prints "pack-check OK in N s" at the end. Not part of the unit-test run (it packs and restores: a minute or two
# once TorchSharp-cpu is in the NuGet cache).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
start=$SECONDS

packages=(KVLink.Core KVLink.Core.Redis KVLink.Core.Cuda KVLink.Demo KVLink.AspNetCore)
work="$(mktemp -d)"
# A unique version per run, so the global NuGet cache can never hand back a stale package; removed again at exit.
version="0.0.0-packcheck.$(date +%s)"
nuget_cache="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
cleanup() {
  rm -rf "$work"
  for p in "${packages[@]}"; do rm -rf "$nuget_cache/${p,,}/$version"; done
}
trap cleanup EXIT

echo "== pack ($version)"
# The same packing a user runs (docs/getting-started.md), into this run's folder and not registered anywhere.
scripts/local-feed.sh --out "$work/feed" --version "$version" --no-register

echo "== package contents"
python3 - "$work/feed" "$version" "$repo" <<'PY'
import sys, zipfile, os, re
feed, version, repo = sys.argv[1], sys.argv[2], sys.argv[3]
ok = True
demo_files = sorted(os.listdir(os.path.join(repo, "models", "kvlink-demo")))
for pkg in ["KVLink.Core", "KVLink.Core.Redis", "KVLink.Core.Cuda", "KVLink.Demo", "KVLink.AspNetCore"]:
    nupkg = zipfile.ZipFile(os.path.join(feed, f"{pkg}.{version}.nupkg"))
    snupkg_path = os.path.join(feed, f"{pkg}.{version}.snupkg")
    names = nupkg.namelist()
    nuspec = nupkg.read(f"{pkg}.nuspec").decode()
    need = ["README.md", "LICENSE", f"lib/net10.0/{pkg}.dll", f"lib/net10.0/{pkg}.xml"]
    problems = [f"missing {n}" for n in need if n not in names]
    if "<readme>README.md</readme>" not in nuspec: problems.append("nuspec <readme>")
    if '<license type="expression">MIT</license>' not in nuspec: problems.append("nuspec <license>")
    if '<projectUrl>https://' not in nuspec: problems.append("nuspec <projectUrl>")
    if not re.search(r'<repository type="git" url="https://', nuspec): problems.append("nuspec <repository url>")
    # The readme links to the docs by URL (a package page has no docs/ folder next to it).
    if "README.md" in names and b"/docs" not in nupkg.read("README.md"): problems.append("README.md does not link to the docs")
    # The package readme is the project's PACKAGE.md (compiled by DocSnippetTests), not the repository README.
    if "README.md" in names and nupkg.read("README.md") != open(os.path.join(repo, "src", pkg, "PACKAGE.md"), "rb").read():
        problems.append("README.md is not src/%s/PACKAGE.md" % pkg)
    # Every dependency on TorchSharp is the range the packages are tested against.
    for m in re.finditer(r'<dependency id="TorchSharp" version="([^"]+)"', nuspec):
        if m.group(1) != "[0.107.0, 0.108.0)": problems.append(f"TorchSharp dependency {m.group(1)}")
    # Every sibling depends on the exact KVLink.Core it was built with (Directory.Build.targets).
    for m in re.finditer(r'<dependency id="KVLink\.Core" version="([^"]+)"', nuspec):
        if m.group(1) not in (f"[{version}]", f"[{version}, {version}]"): problems.append(f"KVLink.Core dependency {m.group(1)}, not exactly [{version}]")
    if pkg != "KVLink.Core" and '<dependency id="KVLink.Core"' not in nuspec: problems.append("no KVLink.Core dependency")
    if pkg == "KVLink.Core":
        if "StackExchange.Redis" in nuspec: problems.append("KVLink.Core depends on StackExchange.Redis")
        if '<dependency id="TorchSharp"' not in nuspec: problems.append("no TorchSharp dependency")
    if pkg == "KVLink.Core.Redis" and '<dependency id="StackExchange.Redis"' not in nuspec:
        problems.append("no StackExchange.Redis dependency")
    if pkg == "KVLink.AspNetCore":
        # ASP.NET Core comes from the app's shared framework, and the package builds on KVLink.Core's public API.
        if '<frameworkReference name="Microsoft.AspNetCore.App"' not in nuspec: problems.append("no Microsoft.AspNetCore.App framework reference")
        if '<dependency id="KVLink.Core"' not in nuspec: problems.append("no KVLink.Core dependency")
    if pkg == "KVLink.Demo":
        for f in demo_files:
            if f"contentFiles/any/any/models/kvlink-demo/{f}" not in names: problems.append(f"contentFiles missing {f}")
        if 'copyToOutput="true"' not in nuspec: problems.append("contentFiles not copied to output")
    # Built deterministically (ContinuousIntegrationBuild when packing): paths are mapped to /_/..., so the DLL's
    # debug directory names /_/src/<project>/obj/.../<pkg>.pdb and neither file holds this machine's checkout path.
    # (A portable PDB stores document paths split into parts, so "/_/" is looked for in the DLL.)
    symbols = zipfile.ZipFile(snupkg_path) if os.path.exists(snupkg_path) else None
    pdb_name = f"lib/net10.0/{pkg}.pdb"
    dll = nupkg.read(f"lib/net10.0/{pkg}.dll") if f"lib/net10.0/{pkg}.dll" in names else b""
    if f"/_/src/{pkg}/".encode() not in dll: problems.append("dll has no deterministic /_/ pdb path")
    if repo.encode() in dll: problems.append(f"dll contains the checkout path {repo}")
    if symbols is None or pdb_name not in symbols.namelist():
        problems.append("snupkg pdb")
    elif repo.encode() in symbols.read(pdb_name):
        problems.append(f"pdb contains the checkout path {repo}")
    print(f"{pkg}: {'ok' if not problems else 'PROBLEMS: ' + ', '.join(problems)}")
    ok = ok and not problems
sys.exit(0 if ok else 1)
PY

echo "== docs/getting-started.md, first section, as a new user"
# The first ```bash and ```csharp blocks of the section "## 1. ...", exactly as written (section 0 builds the local feed,
# which this script has just done into its own folder).
python3 - "$repo/docs/getting-started.md" "$work" <<'PY'
import sys, re, os
doc, work = sys.argv[1], sys.argv[2]
text = open(doc).read()
sections = re.split(r"(?m)^## ", text)
first = next((s for s in sections[1:] if s.startswith("1.")), None)
if first is None: sys.exit("getting-started.md has no '## 1.' section")
bash = re.search(r"```bash\n(.*?)```", first, re.S)
cs = re.search(r"```csharp\n(.*?)```", first, re.S)
if not bash or not cs: sys.exit("getting-started.md's first section needs a ```bash and a ```csharp block")
open(os.path.join(work, "steps.sh"), "w").write(bash.group(1))
open(os.path.join(work, "Program.cs"), "w").write(cs.group(1))
# The answer to expect: the snippet asks where someone was born, and one of its documents says it.
question = re.search(r'"Where was (\w+) born\?"', cs.group(1))
born = question and re.search(re.escape(question.group(1)) + r" was born in (\w+)\.", cs.group(1))
if not born:
    sys.exit("the getting-started snippet should ask where the person of one of its documents was born")
open(os.path.join(work, "expected"), "w").write(born.group(1))
PY
cat "$work/steps.sh"
# Outside the repository: none of its Directory.*.props or nuget.config apply. The machine's configured sources stay
# in effect; KVLink.* comes only from the local feed (package source mapping), so `--prerelease` picks this run's build.
machine_sources="$(cd "$work" && dotnet nuget list source --format short | awk '$1 ~ /^E/ {print $2}')"
{
  echo '<?xml version="1.0" encoding="utf-8"?>'
  echo '<configuration>'
  echo '  <packageSources>'
  echo '    <clear />'
  echo "    <add key=\"kvlink-local\" value=\"$work/feed\" />"
  n=0; for src in $machine_sources; do n=$((n + 1)); echo "    <add key=\"machine-$n\" value=\"$src\" />"; done
  echo '  </packageSources>'
  echo '  <packageSourceMapping>'
  echo '    <packageSource key="kvlink-local"><package pattern="KVLink.*" /></packageSource>'
  n=0; for src in $machine_sources; do n=$((n + 1)); echo "    <packageSource key=\"machine-$n\"><package pattern=\"*\" /></packageSource>"; done
  echo '  </packageSourceMapping>'
  echo '</configuration>'
} > "$work/nuget.config"
user_start=$SECONDS
(cd "$work" && bash -euo pipefail steps.sh)
app="$(find "$work" -mindepth 2 -maxdepth 2 -name '*.csproj' -printf '%h\n' | head -n 1)"
cp "$work/Program.cs" "$app/Program.cs"
(cd "$app" && dotnet run --nologo) | tee "$work/run.log"
expected="$(cat "$work/expected")"
grep -q "$expected" "$work/run.log" || { echo "the app did not answer '$expected'" >&2; exit 1; }
echo "new-user flow: $((SECONDS - user_start)) s (new console app, three packages, paste, run)"
echo "pack-check OK in $((SECONDS - start)) s"
