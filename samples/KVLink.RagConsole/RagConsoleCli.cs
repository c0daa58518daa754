using System.CommandLine;
using KVLink.Core.Engine;

namespace KVLink.RagConsole;

/// <summary>
/// The command line, parsed by System.CommandLine: <c>&lt;folder&gt; [--model] [--store] [--top]</c> runs the console,
/// <c>check &lt;folder&gt;</c> inspects a checkpoint. Every value is checked at parse time (folders exist, <c>--top</c> is a
/// positive integer, no unknown option), so a mistake is one line and exit code 1 before any model loads; <c>--help</c>
/// exits 0.
/// </summary>
public static class RagConsoleCli
{
    /// <summary>The root command (what Program runs and the tests parse).</summary>
    public static RootCommand BuildRootCommand()
    {
        var folder = ExistingFolder(new Argument<string>("folder") { Description = "folder of .txt / .md files to index and ask about" });
        var model = ExistingFolder(new Option<string>("--model") { Description = "Hugging Face checkpoint folder (default: the demo model next to the app)", HelpName = "folder" });
        var store = new Option<string>("--store") { Description = "cache store folder (default <folder>/.kvlink-cache)", HelpName = "folder" };
        var top = new Option<int>("--top") { Description = "documents retrieved per question", HelpName = "k", DefaultValueFactory = _ => 3 };
        top.Validators.Add(r =>
        {
            // A value that did not convert ("abc") has its own parse error already.
            if (r.Tokens.Count == 1 && int.TryParse(r.Tokens[0].Value, out int k) && k < 1) r.AddError($"--top must be at least 1 (was {k}).");
        });

        var root = new RootCommand("KVLink.RagConsole: index a folder of .txt/.md files into a KV cache store, then answer questions from the stored caches.")
        {
            folder, model, store, top,
        };
        root.SetAction((r, ct) => RagSession.RunAsync(
            Path.GetFullPath(r.GetValue(folder)!), r.GetValue(model), r.GetValue(store), r.GetValue(top),
            r.InvocationConfiguration.Output, r.InvocationConfiguration.Error, ct));

        var checkFolder = new Argument<string>("folder") { Description = "the checkpoint folder to inspect" };
        var dtype = new Option<ComputeDType>("--dtype") { Description = "the dtype the engine would run at (memory estimate)", DefaultValueFactory = _ => ComputeDType.Auto };
        var check = new Command("check", "inspect a checkpoint folder without loading its weights: what it holds, what is wrong, the memory it needs, the CPU tier")
        {
            checkFolder, dtype,
        };
        check.SetAction(r => CheckCommand.Run(r.GetValue(checkFolder)!, r.GetValue(dtype), r.InvocationConfiguration.Output));
        root.Add(check);
        return root;
    }

    private static T ExistingFolder<T>(T symbol) where T : Symbol
    {
        switch (symbol)
        {
            case Argument<string> a: a.Validators.Add(r => Check(r.GetValueOrDefault<string?>(), r.AddError)); break;
            case Option<string> o: o.Validators.Add(r => Check(r.GetValueOrDefault<string?>(), r.AddError)); break;
        }
        return symbol;

        void Check(string? path, Action<string> error)
        {
            // An unknown option in the folder's place ("--bogus") would otherwise read as a folder name.
            if (symbol is Argument && path is not null && path.StartsWith('-')) error($"Unrecognized option '{path}' (see --help).");
            else if (path is not null && !Directory.Exists(path)) error($"{symbol.Name}: the folder '{Path.GetFullPath(path)}' does not exist.");
        }
    }
}
