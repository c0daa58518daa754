using System.Collections.Immutable;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;

namespace KVLink.Core.Tests.Docs;

/// <summary>
/// The packages a document tells its reader to add, and the assemblies a project holding only those packages compiles
/// against. A package is named by a <c>dotnet add package NAME</c> anywhere in the document (a shell block, a snippet's
/// comment, the text), a project of this repository by <c>dotnet add reference .../NAME.csproj</c>; a package readme (PACKAGE.md) also names its own package; KVLink.Core is every app's base (getting
/// started, step 2). The assemblies are the named packages' dependency closure as this test project resolved it
/// (its deps.json: KVLink.* are project references standing in for the packages built from this repository), so a type
/// from a package the document never names (CS1061 BuildServiceProvider without Microsoft.Extensions.DependencyInjection)
/// fails to compile as it would for the reader.
/// </summary>
internal static partial class DocPackages
{
    public const string Base = "KVLink.Core";

    private static readonly Lazy<Dictionary<string, (string[] Dependencies, string[] Assemblies)>> Libraries = new(ReadDeps);
    private static readonly Lazy<ImmutableArray<MetadataReference>> Framework = new(() => Load(FrameworkFiles(web: false)));
    private static readonly Lazy<ImmutableArray<MetadataReference>> WebFramework = new(() => Load(FrameworkFiles(web: true)));

    /// <summary>The packages <paramref name="file"/> (repository-relative) names, with <see cref="Base"/>, in ordinal order.</summary>
    public static IReadOnlyList<string> Named(string file)
    {
        var names = new SortedSet<string>(StringComparer.OrdinalIgnoreCase) { Base };
        string text = File.ReadAllText(Path.Combine(MarkdownDocs.RepoRoot, file));
        foreach (Match m in AddPackage().Matches(text))
            if (!m.Groups["name"].Value.EndsWith('.'))   // "dotnet add package KVLink.*" names a family, not a package
                names.Add(m.Groups["name"].Value);
        // A project of this repository the doc tells the reader to reference (KVLink.Training is no package).
        foreach (Match m in AddReference().Matches(text))
            names.Add(m.Groups["name"].Value);
        if (MarkdownDocs.IsPackageReadme(file)) names.Add(Path.GetFileName(Path.GetDirectoryName(file)!));
        return [.. names];
    }

    /// <summary>The metadata references of a project holding exactly <paramref name="packages"/> (plus the ASP.NET Core framework when <paramref name="web"/>).</summary>
    /// <exception cref="InvalidOperationException">A package this test project does not reference, so its assemblies are unknown here.</exception>
    public static ImmutableArray<MetadataReference> References(IEnumerable<string> packages, bool web)
    {
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var files = new SortedSet<string>(StringComparer.OrdinalIgnoreCase);
        var pending = new Stack<string>(packages);
        while (pending.TryPop(out string? name))
        {
            if (!seen.Add(name)) continue;
            if (!Libraries.Value.TryGetValue(name, out var library))
            {
                if (IsRuntimeOnly(name)) continue;
                throw new InvalidOperationException($"The package '{name}' is not referenced by KVLink.Core.Tests, so the snippet test cannot compile against it: add a PackageReference.");
            }
            foreach (string a in library.Assemblies) files.Add(a);
            foreach (string d in library.Dependencies) pending.Push(d);
        }
        var references = (web ? WebFramework : Framework).Value.ToBuilder();
        references.AddRange(Load(files.Select(f => Path.Combine(AppContext.BaseDirectory, f)).Where(File.Exists)));
        return references.ToImmutable();
    }

    /// <summary>Runtime packages (native LibTorch) that bring no assembly to compile against.</summary>
    private static bool IsRuntimeOnly(string name) => name.StartsWith("TorchSharp-", StringComparison.OrdinalIgnoreCase) || name.StartsWith("libtorch-", StringComparison.OrdinalIgnoreCase);

    private static Dictionary<string, (string[], string[])> ReadDeps()
    {
        string deps = Path.Combine(AppContext.BaseDirectory, "KVLink.Core.Tests.deps.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(deps));
        var target = doc.RootElement.GetProperty("targets").EnumerateObject().First().Value;
        var libraries = new Dictionary<string, (string[], string[])>(StringComparer.OrdinalIgnoreCase);
        foreach (var library in target.EnumerateObject())
        {
            string name = library.Name[..library.Name.IndexOf('/')];
            string[] dependencies = library.Value.TryGetProperty("dependencies", out var d) ? [.. d.EnumerateObject().Select(p => p.Name)] : [];
            string[] assemblies = library.Value.TryGetProperty("runtime", out var r) ? [.. r.EnumerateObject().Select(p => Path.GetFileName(p.Name))] : [];
            libraries[name] = (dependencies, assemblies);
        }
        return libraries;
    }

    /// <summary>Microsoft.NETCore.App (what every console app has) and, for a web app, Microsoft.AspNetCore.App of the same or newest version.</summary>
    private static IEnumerable<string> FrameworkFiles(bool web)
    {
        string runtimeDir = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        foreach (string f in Directory.EnumerateFiles(runtimeDir, "*.dll")) yield return f;
        if (!web) yield break;
        string aspNet = Path.Combine(runtimeDir, "..", "..", "Microsoft.AspNetCore.App");
        if (!Directory.Exists(aspNet)) yield break;
        string? dir = Directory.Exists(Path.Combine(aspNet, Path.GetFileName(runtimeDir)))
            ? Path.Combine(aspNet, Path.GetFileName(runtimeDir))
            : Directory.GetDirectories(aspNet).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault();
        if (dir is null) yield break;
        foreach (string f in Directory.EnumerateFiles(dir, "*.dll")) yield return f;
    }

    private static ImmutableArray<MetadataReference> Load(IEnumerable<string> paths)
    {
        var references = ImmutableArray.CreateBuilder<MetadataReference>();
        foreach (string path in paths)
        {
            try { AssemblyName.GetAssemblyName(path); }
            catch (BadImageFormatException) { continue; }   // a native library
            references.Add(MetadataReference.CreateFromFile(path));
        }
        return references.ToImmutable();
    }

    [GeneratedRegex(@"dotnet add package (?<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)")]
    private static partial Regex AddPackage();

    [GeneratedRegex(@"dotnet add (?:\S+ )?reference \S*?(?<name>[A-Za-z0-9_.]+)\.csproj")]
    private static partial Regex AddReference();
}
