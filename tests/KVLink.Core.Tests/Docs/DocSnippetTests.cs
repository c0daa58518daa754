using System.Collections.Immutable;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Docs;

/// <summary>
/// Every ```csharp block of the documentation compiles against the real assemblies, as a user would paste it into a
/// <c>dotnet new console</c> app holding only the packages its document tells the reader to add (<see cref="DocPackages"/>:
/// the SDK's implicit usings, plus the usings the snippet shows). A snippet is compiled as written: top-level statements,
/// or type declarations; a snippet of bare members is compiled inside a class. A block marked <c>```csharp no-compile</c>
/// is deliberately partial: it is counted and named, never compiled. Snippets that run on the demo model are also run
/// (<see cref="DocSnippetRunTests"/>).
/// </summary>
public sealed class DocSnippetTests(ITestOutputHelper output)
{
    private const string NoCompile = "no-compile";

    /// <summary>What <c>dotnet new console</c> (ImplicitUsings=enable) gives every file; ASP.NET Core's web SDK adds its own below.</summary>
    private const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    private static readonly CSharpParseOptions Parse = new(LanguageVersion.Latest, DocumentationMode.None);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, ImmutableArray<MetadataReference>> ReferencesByPackages = new();

    [Fact]
    public void Every_csharp_snippet_of_the_docs_compiles()
    {
        var blocks = MarkdownDocs.Files().SelectMany(MarkdownDocs.CodeBlocks)
            .Where(b => b.Language is "csharp" or "cs" or "c#").ToList();
        Assert.True(blocks.Count >= 10, $"only {blocks.Count} C# snippets found under {MarkdownDocs.RepoRoot}: is the doc scan broken?");

        var skipped = blocks.Where(b => b.Has(NoCompile)).ToList();
        var failures = new List<string>();
        foreach (var block in blocks.Except(skipped))
        {
            var errors = Compile(block);
            failures.AddRange(errors.Select(e => $"{block}: {e}"));
        }

        output.WriteLine($"{blocks.Count - skipped.Count} snippets compiled, {skipped.Count} marked {NoCompile}" +
                         (skipped.Count > 0 ? ": " + string.Join(", ", skipped) : ""));
        Assert.True(failures.Count == 0,
            $"{failures.Count} compile error(s) in documentation snippets (file:line of the opening fence; error line is within the snippet):\n" +
            string.Join('\n', failures));
    }

    [Fact]
    public void A_broken_snippet_is_reported_with_its_error()
    {
        var errors = Compile(new MarkdownDocs.CodeBlock("test.md", 1, "csharp", "var engine = new NoSuchEngine();"));
        Assert.Contains(errors, e => e.Contains("CS0246") && e.Contains("NoSuchEngine"));
        Assert.Empty(Compile(new MarkdownDocs.CodeBlock("test.md", 1, "csharp",
            "using KVLink.Core.Engine;\nvar options = new KvLinkOptions { LinkTokens = 1 };\nConsole.WriteLine(options.LinkTokens);")));
    }

    /// <summary>
    /// The README's DI snippet as the issue found it: with KVLink.Core alone, <c>BuildServiceProvider</c> is missing (it is in
    /// Microsoft.Extensions.DependencyInjection, which KVLink.Core does not bring); with that package named, it compiles.
    /// </summary>
    [Fact]
    public void A_snippet_compiles_only_against_the_packages_its_doc_names()
    {
        const string Code = """
            using KVLink.Core.Hosting;
            using Microsoft.Extensions.DependencyInjection;
            var services = new ServiceCollection();
            services.AddKvLink(o => o.ModelPath = "/models/x");
            await using var provider = services.BuildServiceProvider();
            """;
        var block = new MarkdownDocs.CodeBlock("test.md", 1, "csharp", Code);
        Assert.Contains(Compile(block, [DocPackages.Base]), e => e.Contains("CS1061") && e.Contains("BuildServiceProvider"));
        Assert.Empty(Compile(block, [DocPackages.Base, "Microsoft.Extensions.DependencyInjection"]));
        Assert.Contains("KVLink.Core.Redis", DocPackages.Named("src/KVLink.Core.Redis/PACKAGE.md"));   // a package readme names its package
        Assert.Superset(new SortedSet<string> { "KVLink.Core", "KVLink.Demo", "TorchSharp-cpu", "Microsoft.Extensions.DependencyInjection" },
            new SortedSet<string>(DocPackages.Named("docs/getting-started.md")));
    }

    /// <summary>The errors of compiling one snippet, each as "line N: CSxxxx: message" (line within the snippet, 1-based).</summary>
    private static List<string> Compile(MarkdownDocs.CodeBlock block, IReadOnlyList<string>? packages = null)
    {
        bool web = IsWeb(block);
        packages ??= File.Exists(Path.Combine(MarkdownDocs.RepoRoot, block.File)) ? DocPackages.Named(block.File) : [DocPackages.Base];
        ImmutableArray<MetadataReference> references;
        try
        {
            references = ReferencesByPackages.GetOrAdd((web ? "web:" : "") + string.Join(',', packages), _ => DocPackages.References(packages, web));
        }
        catch (InvalidOperationException e) { return [e.Message]; }
        var asWritten = CompileText(block.Code, web, references);
        if (asWritten.Count == 0) return [];

        // A snippet of bare members (methods, properties) reads as a class body: compile it inside one.
        var root = (CompilationUnitSyntax)CSharpSyntaxTree.ParseText(block.Code, Parse).GetRoot();
        bool hasMembers = root.Members.Any(m => m is not GlobalStatementSyntax and not BaseNamespaceDeclarationSyntax and not BaseTypeDeclarationSyntax and not DelegateDeclarationSyntax)
                          || root.Members.OfType<GlobalStatementSyntax>().Any(g => g.Statement is LocalFunctionStatementSyntax { Modifiers.Count: > 0 });
        if (hasMembers)
        {
            string usings = string.Concat(root.Usings.Select(u => u.ToFullString()));
            string body = string.Concat(root.Members.Select(m => m.ToFullString()));
            int usingLines = usings.Count(c => c == '\n');
            var asClass = CompileText(usings + "public partial class Snippet\n{\n#line " + (usingLines + 1) + "\n" + body + "\n}\n", web, references);
            if (asClass.Count == 0) return [];
        }
        return asWritten;
    }

    internal static bool IsWeb(MarkdownDocs.CodeBlock block) =>
        block.Code.Contains("Microsoft.AspNetCore", StringComparison.Ordinal) || block.Code.Contains("WebApplication", StringComparison.Ordinal);

    private static List<string> CompileText(string code, bool web, ImmutableArray<MetadataReference> references)
    {
        var compilation = Compilation(code, web, references);
        return compilation.GetDiagnostics()
            .Where(d => d.Severity == DiagnosticSeverity.Error)
            .Select(d => $"line {d.Location.GetMappedLineSpan().StartLinePosition.Line + 1}: {d.Id}: {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}")
            .Distinct()
            .ToList();
    }

    /// <summary>The compilation of one snippet as written, with the SDK's implicit usings (and the web SDK's for a web app).</summary>
    internal static CSharpCompilation Compilation(string code, bool web, ImmutableArray<MetadataReference> references)
    {
        var tree = CSharpSyntaxTree.ParseText(code, Parse, path: "snippet.cs");
        var root = (CompilationUnitSyntax)tree.GetRoot();
        bool topLevel = root.Members.OfType<GlobalStatementSyntax>().Any();
        string implicitUsings = ImplicitUsings + (web ? """

            global using Microsoft.AspNetCore.Builder;
            global using Microsoft.AspNetCore.Hosting;
            global using Microsoft.AspNetCore.Http;
            global using Microsoft.AspNetCore.Routing;
            global using Microsoft.Extensions.Configuration;
            global using Microsoft.Extensions.DependencyInjection;
            global using Microsoft.Extensions.Hosting;
            global using Microsoft.Extensions.Logging;
            """ : "");
        return CSharpCompilation.Create(
            "DocSnippet",
            [tree, CSharpSyntaxTree.ParseText(implicitUsings, Parse, path: "GlobalUsings.g.cs")],
            references,
            new CSharpCompilationOptions(topLevel ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary,
                nullableContextOptions: NullableContextOptions.Enable, allowUnsafe: true));
    }

    /// <summary>The references of a snippet of <paramref name="file"/>: the packages the file names.</summary>
    internal static ImmutableArray<MetadataReference> ReferencesFor(string file, bool web)
    {
        var packages = DocPackages.Named(file);
        return ReferencesByPackages.GetOrAdd((web ? "web:" : "") + string.Join(',', packages), _ => DocPackages.References(packages, web));
    }

    /// <summary>
    /// The runtime's own assemblies, every managed assembly next to the tests (KVLink.Core, .Redis, .Cuda, .Demo and
    /// their dependencies: what a user's app references) and, when installed, ASP.NET Core's shared framework.
    /// </summary>
    internal static ImmutableArray<MetadataReference> LoadReferences()
    {
        var paths = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string path in ((string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            paths.TryAdd(Path.GetFileName(path), path);
        foreach (string path in Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
            paths.TryAdd(Path.GetFileName(path), path);

        // .../shared/Microsoft.NETCore.App/<version>/ -> .../shared/Microsoft.AspNetCore.App/<same or newest version>/
        string runtimeDir = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        string aspNet = Path.Combine(runtimeDir, "..", "..", "Microsoft.AspNetCore.App");
        if (Directory.Exists(aspNet))
        {
            string? dir = Directory.Exists(Path.Combine(aspNet, Path.GetFileName(runtimeDir)))
                ? Path.Combine(aspNet, Path.GetFileName(runtimeDir))
                : Directory.GetDirectories(aspNet).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault();
            if (dir is not null)
                foreach (string path in Directory.EnumerateFiles(dir, "*.dll"))
                    paths.TryAdd(Path.GetFileName(path), path);
        }

        var references = ImmutableArray.CreateBuilder<MetadataReference>();
        foreach (string path in paths.Values)
        {
            try { AssemblyName.GetAssemblyName(path); }
            catch (BadImageFormatException) { continue; }   // a native library
            references.Add(MetadataReference.CreateFromFile(path));
        }
        return references.ToImmutable();
    }
}
