using System.Runtime.Loader;
using KVLink.Core.Tests.Reliability;
using Microsoft.CodeAnalysis;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Docs;

/// <summary>
/// The documentation's snippets that run in seconds, run: every top-level ```csharp program that loads the demo model
/// (<c>DemoModel</c>), compiled as <see cref="DocSnippetTests"/> compiles it (only the packages its doc names) and run
/// in-process from an empty working directory, as <c>dotnet run</c> from a new project would (a model path relative to
/// the working directory fails here as it does there). Serial: the console and the working directory are per process.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class DocSnippetRunTests(ITestOutputHelper output)
{
    [Fact]
    public void Every_demo_model_snippet_runs_from_an_empty_working_directory()
    {
        var blocks = MarkdownDocs.Files().SelectMany(MarkdownDocs.CodeBlocks)
            .Where(b => b.Language is "csharp" or "cs" or "c#" && !b.Has("no-compile") && !DocSnippetTests.IsWeb(b))
            .Where(b => b.Code.Contains("DemoModel.", StringComparison.Ordinal) && b.Code.Contains("await ", StringComparison.Ordinal))
            .ToList();
        Assert.True(blocks.Count >= 2, $"only {blocks.Count} demo-model snippets found (getting-started and conversations have one each)");

        var failures = new List<string>();
        foreach (var block in blocks)
        {
            var (ok, text) = Run(block);
            output.WriteLine($"{block}: {(ok ? "ran" : "FAILED")}\n{text}");
            if (!ok) failures.Add($"{block}: {text}");
        }
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
    }

    [Fact]
    public void A_snippet_with_a_model_path_relative_to_the_working_directory_fails_here()
    {
        var block = new MarkdownDocs.CodeBlock("docs/conversations.md", 1, "csharp", """
            using KVLink.Core.Engine;
            await using var engine = await KvLinkEngine.LoadAsync("models/kvlink-demo");
            Console.WriteLine(engine.ModelId);
            """);
        var (ok, text) = Run(block);
        Assert.False(ok);
        Assert.Contains("DirectoryNotFoundException", text);
        Assert.Contains("models/kvlink-demo", text);
    }

    /// <summary>Compiles and runs one top-level snippet; its console output, or its compile errors or exception.</summary>
    private static (bool Ok, string Text) Run(MarkdownDocs.CodeBlock block)
    {
        var compilation = DocSnippetTests.Compilation(block.Code, web: false, DocSnippetTests.ReferencesFor(block.File, web: false));
        using var image = new MemoryStream();
        var emitted = compilation.Emit(image);
        if (!emitted.Success)
            return (false, string.Join('\n', emitted.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
        image.Position = 0;

        // A collectible context per snippet (each is an assembly named DocSnippet); KVLink.* resolve from the default context.
        var context = new AssemblyLoadContext("doc-snippet", isCollectible: true);
        var console = Console.Out;
        string cwd = Directory.GetCurrentDirectory();
        using var empty = new TempFolder();
        var captured = new StringWriter();
        try
        {
            var entry = context.LoadFromStream(image).EntryPoint!;
            Console.SetOut(captured);
            Directory.SetCurrentDirectory(empty.Path);
            var run = Task.Run(() => entry.Invoke(null, entry.GetParameters().Length == 0 ? null : [Array.Empty<string>()]));
            if (!run.Wait(TimeSpan.FromMinutes(2))) return (false, "did not finish in 2 minutes");
            string printed = captured.ToString();
            return (printed.Trim().Length > 0, printed.Trim().Length > 0 ? printed : "ran but printed nothing");
        }
        catch (AggregateException e) when (e.InnerException is System.Reflection.TargetInvocationException { InnerException: { } inner })
        {
            return (false, $"{captured}\n{inner.GetType().FullName}: {inner.Message}");
        }
        finally
        {
            Console.SetOut(console);
            Directory.SetCurrentDirectory(cwd);
            context.Unload();
        }
    }
}
