using System.Reflection;
using KVLink.Core.Engine;
using KVLink.Core.Tests.Docs;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace KVLink.Core.Tests.Architecture;

/// <summary>
/// The package boundary holds: KVLink.Core's public face is small (its list lives in PublicAPI.Shipped.txt, which the
/// PublicApiAnalyzers enforce at build), it never references the Redis client, and its namespaces depend on each
/// other without cycles (checked on symbols, with Roslyn, not on using lines).
/// </summary>
public class PackageBoundaryTests
{
    private static readonly Assembly Core = typeof(KvLinkEngine).Assembly;

    [Fact]
    public void KVLink_Core_exports_at_most_44_types()
    {
        var exported = Core.GetExportedTypes().Where(t => !t.IsNested).Select(t => t.FullName).Order(StringComparer.Ordinal).ToList();
        // 44: SlotPolicy (#15), the one setting a caller of a numbered-header checkpoint must be able to choose;
        // TokenLogprob (#14), the per-token logprob record a caller reads from GenerationResult.Logprobs.
        // 45: KvLinkRuntimeInfo (#24), what the engine computes with (CPU tier, dtype and why, decode kernel) for hosts' diagnostics.
        // 47: KvLinkCheckpointReport (#27: checking a folder before loading it, with its Inspect) and KvLinkHealthResponse
        // (#27: /health with the check's data, which Core cannot write through ASP.NET Core's types).
        // 44 (#26): ChunkedKvCacheStore and ChunkedKvCacheStoreOptions, the public base the Redis and IDistributedCache stores
        // share (the Redis package builds on Core's public API), in; out: DistributedCacheKvCacheStoreOptions (the shared
        // options are its settings), KvLinkTelemetry (its names are KvLinkDiagnostics constants), KvLinkChatClientExtensions and
        // KvLinkChatOptionsExtensions (one KvLinkChatExtensions), KvLinkHealthResponse (an extension beside AddKvLinkHealthCheck),
        // KvCacheEvictionPolicy (nested: MemoryKvCacheStoreOptions.EvictionPolicy).
        Assert.True(exported.Count <= 44, $"{exported.Count} public types: {string.Join(", ", exported)}");
    }

    [Fact]
    public void The_shipped_packages_see_only_the_public_API_of_KVLink_Core()
    {
        // A consumer may update one package and not another: a package built on Core's internals could then break at run
        // time. So the shipped siblings (Redis, Cuda, AspNetCore) build on the public API, with no InternalsVisibleTo (#26).
        var friends = Core.GetCustomAttributes<System.Runtime.CompilerServices.InternalsVisibleToAttribute>().Select(a => a.AssemblyName).ToList();
        Assert.Contains("KVLink.Core.Tests", friends); // the check sees the attributes
        Assert.DoesNotContain("KVLink.Core.Redis", friends);
        Assert.DoesNotContain("KVLink.Core.Cuda", friends);
        Assert.DoesNotContain("KVLink.AspNetCore", friends);
    }

    [Fact]
    public void KVLink_Core_does_not_reference_StackExchange_Redis()
    {
        Assert.DoesNotContain(Core.GetReferencedAssemblies(), a => a.Name!.StartsWith("StackExchange.Redis", StringComparison.Ordinal));
        string csproj = File.ReadAllText(Path.Combine(MarkdownDocs.RepoRoot, "src", "KVLink.Core", "KVLink.Core.csproj"));
        Assert.DoesNotContain("StackExchange.Redis", csproj, StringComparison.Ordinal);
    }

    [Fact]
    public void The_namespaces_of_KVLink_Core_have_no_cycles()
    {
        var edges = NamespaceEdges();
        var cycles = new List<string>();
        foreach (var (from, tos) in edges)
            foreach (string to in tos)
                if (Reaches(edges, to, from, [])) cycles.Add($"{from} -> {to} ({string.Join(", ", Evidence[(from, to)].Take(3))})");
        Assert.True(cycles.Count == 0, "namespace cycles:\n" + string.Join("\n", cycles));
        Assert.True(edges.Count >= 8, "the check must see the namespaces"); // guards against a check that sees nothing
    }

    private static readonly Dictionary<(string, string), HashSet<string>> Evidence = [];

    /// <summary>Top-level namespace (KVLink.Core.X) to the top-level namespaces whose types its code names.</summary>
    private static Dictionary<string, HashSet<string>> NamespaceEdges()
    {
        string root = Path.Combine(MarkdownDocs.RepoRoot, "src", "KVLink.Core");
        var files = Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal));
        var options = new CSharpParseOptions(LanguageVersion.Preview);
        var trees = files.Select(f => CSharpSyntaxTree.ParseText(File.ReadAllText(f), options, f)).ToList();
        trees.Add(CSharpSyntaxTree.ParseText(string.Join('\n', new[] { "System", "System.IO", "System.Linq", "System.Collections.Generic", "System.Threading", "System.Threading.Tasks", "System.Net.Http" }
            .Select(n => $"global using {n};")), options));
        var references = DocSnippetTests.LoadReferences().Where(r => !(r.Display ?? "").EndsWith("KVLink.Core.dll", StringComparison.OrdinalIgnoreCase));
        var compilation = CSharpCompilation.Create("KVLink.Core.Check", trees, references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true, nullableContextOptions: NullableContextOptions.Enable));

        var edges = new Dictionary<string, HashSet<string>>();
        foreach (var tree in trees)
        {
            var model = compilation.GetSemanticModel(tree);
            var root2 = tree.GetRoot();
            string? ns = root2.DescendantNodes().OfType<BaseNamespaceDeclarationSyntax>().FirstOrDefault()?.Name.ToString();
            if (ns is null || Top(ns) is not { } from) continue;
            foreach (var name in root2.DescendantNodes().OfType<SimpleNameSyntax>())
            {
                var symbol = model.GetSymbolInfo(name).Symbol;
                var type = symbol as INamedTypeSymbol ?? symbol?.ContainingType;
                if (type?.ContainingNamespace?.ToDisplayString() is not { } target || Top(target) is not { } to || to == from) continue;
                if (!edges.TryGetValue(from, out var set)) edges[from] = set = [];
                set.Add(to);
                if (!Evidence.TryGetValue((from, to), out var why)) Evidence[(from, to)] = why = [];
                why.Add($"{Path.GetFileName(tree.FilePath)}:{type.Name}");
            }
        }
        return edges;
    }

    private static string? Top(string ns)
    {
        var parts = ns.Split('.');
        return parts.Length >= 3 && parts[0] == "KVLink" && parts[1] == "Core" ? string.Join('.', parts.Take(3)) : null;
    }

    private static bool Reaches(Dictionary<string, HashSet<string>> edges, string from, string to, HashSet<string> seen)
    {
        if (from == to) return true;
        if (!seen.Add(from) || !edges.TryGetValue(from, out var next)) return false;
        return next.Any(n => Reaches(edges, n, to, seen));
    }
}
