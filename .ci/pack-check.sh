#!/usr/bin/env bash
# Packs KVLink.Core and KVLink.Core.Cuda, checks what each package contains, then builds and runs a tiny app
# that consumes them from a local folder feed exactly as users will (PackageReference, TorchSharp-cpu runtime),
# so the module initializer that loads TorchSharp on Debian 12 runs from the packaged assembly.
# Prints "pack-check OK" at the end. Not part of the unit-test run (it packs and restores: about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
start=$SECONDS

work="$(mktemp -d)"
# A unique version per run, so the global NuGet cache can never hand back a stale package; removed again at exit.
version="0.0.0-packcheck.$(date +%s)"
nuget_cache="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
cleanup() {
  rm -rf "$work" "$nuget_cache/kvlink.core/$version" "$nuget_cache/kvlink.core.cuda/$version"
}
trap cleanup EXIT

echo "== pack ($version)"
for p in src/KVLink.Core src/KVLink.Core.Cuda; do
  dotnet pack "$p" -c Release -o "$work/feed" -p:Version="$version" --nologo -v quiet
done

echo "== package contents"
python3 - "$work/feed" "$version" <<'PY'
import sys, zipfile, os
feed, version = sys.argv[1], sys.argv[2]
ok = True
for pkg in ["KVLink.Core", "KVLink.Core.Cuda"]:
    nupkg = os.path.join(feed, f"{pkg}.{version}.nupkg")
    snupkg = os.path.join(feed, f"{pkg}.{version}.snupkg")
    names = zipfile.ZipFile(nupkg).namelist()
    nuspec = zipfile.ZipFile(nupkg).read(f"{pkg}.nuspec").decode()
    need = ["README.md", "LICENSE", f"lib/net10.0/{pkg}.dll", f"lib/net10.0/{pkg}.xml"]
    missing = [n for n in need if n not in names]
    if "<readme>README.md</readme>" not in nuspec: missing.append("nuspec <readme>")
    if '<license type="expression">MIT</license>' not in nuspec: missing.append("nuspec <license>")
    symbols = zipfile.ZipFile(snupkg).namelist() if os.path.exists(snupkg) else []
    if f"lib/net10.0/{pkg}.pdb" not in symbols: missing.append("snupkg pdb")
    print(f"{pkg}: {'ok' if not missing else 'MISSING ' + ', '.join(missing)}")
    ok = ok and not missing
sys.exit(0 if ok else 1)
PY

echo "== consumer app"
app="$work/app"
mkdir -p "$app"
# Outside the repository: none of its Directory.*.props apply. The machine's configured sources stay in effect.
cat > "$app/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="kvlink-local" value="$work/feed" />
  </packageSources>
</configuration>
XML
cat > "$app/PackCheck.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="KVLink.Core" Version="$version" />
    <PackageReference Include="KVLink.Core.Cuda" Version="$version" />
    <PackageReference Include="TorchSharp-cpu" Version="0.107.0" />
    <PackageReference Include="Microsoft.Extensions.DependencyInjection" Version="10.0.0" />
  </ItemGroup>
</Project>
XML
cat > "$app/Program.cs" <<'CS'
using KVLink.Core.Cuda;
using KVLink.Core.Engine;
using KVLink.Core.Hosting;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

string model = Path.Combine(Path.GetTempPath(), "kvlink-pack-check-" + Environment.ProcessId);
try
{
    SyntheticCheckpoint.Write(model, SyntheticCheckpoint.SmallConfig(hidden: 64), seed: 1);
    var services = new ServiceCollection();
    services.AddKvLink(o => { o.ModelPath = model; o.Generation = new() { MaxNewTokens = 8 }; })
            .UseCuda(c => c.FallbackToCpu = true);
    await using var provider = services.BuildServiceProvider();
    var engine = provider.GetRequiredService<KvLinkEngine>();
    string id = await engine.PrecomputeAsync(new KvLinkDocument("Paris is the capital of France.", "Paris"));
    var chat = provider.GetRequiredService<IChatClient>();
    var answer = await chat.GetResponseAsync("What is the capital of France?", new ChatOptions().WithDocuments(id));
    Console.WriteLine($"device={engine.Model.Device} cuda={CudaDevice.IsAvailable} patched-libtorchsharp={KVLink.Core.Native.TorchSharpLoader.PatchedLibraryPath ?? "(not needed)"}");
    Console.WriteLine($"answer tokens={answer.Usage!.OutputTokenCount} cached input tokens={answer.Usage.CachedInputTokenCount}");
    if (answer.Usage.CachedInputTokenCount is not > 0) throw new Exception("no cached tokens were reused");
    Console.WriteLine("consumer OK");
}
finally { Directory.Delete(model, recursive: true); }
CS
(cd "$app" && dotnet run -c Release --nologo -v quiet) | tee "$work/run.log"
grep -q "consumer OK" "$work/run.log"
echo "pack-check OK in $((SECONDS - start)) s"
