using System.CommandLine;
using KVLink.Demo;
using KVLink.RagConsole;
using KVLink.Train;

namespace KVLink.Core.Tests.Samples;

/// <summary>
/// The samples' command lines, parsed and invoked in-process through the same <c>BuildRootCommand()</c> their Program runs:
/// help exits 0, and every bad value is an error with exit code 1 whose message names the option, before any work
/// (no corpus built, no model loaded: the cases below would otherwise take minutes or throw with a stack trace).
/// </summary>
public sealed class CommandLineTests
{
    private static (int Code, string Output, string Error) Run(RootCommand root, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("sanity", "--help")]
    [InlineData("eval", "--help")]
    [InlineData("continue", "--help")]
    public void Train_help_exits_0(params string[] args)
    {
        var (code, output, _) = Run(TrainCli.BuildRootCommand(), args);
        Assert.Equal(0, code);
        Assert.Contains("Usage:", output);
    }

    [Theory]
    [InlineData("--steps must be at least 1 (was -5).", "sanity", "--steps", "-5")]
    [InlineData("--batch must be at least 1 (was 0).", "demo", "--batch", "0")]
    [InlineData("--lr must be a positive number (was -1).", "sanity", "--lr", "-1")]
    [InlineData("--easy must be between 0 and 1 (was 1.5).", "demo", "--easy", "1.5")]
    [InlineData("--links: '-1' is not a non-negative integer", "eval", "--model", ".", "--data", "x", "--links", "0,-1")]
    [InlineData("'abc'", "sanity", "--lr", "abc")]
    [InlineData("--model", "eval", "--data", "/nope")]   // required
    [InlineData("--drill must be between 0 and 1 (was 2).", "demo", "--drill", "2")]
    [InlineData("--head-dim must be at least 1 (was 0).", "demo", "--head-dim", "0")]
    [InlineData("--from", "continue", "--work", "/tmp/kvlink-continue")]   // required
    [InlineData("--blocked must be between 0 and 1 (was 1.5).", "continue", "--from", ".", "--work", "/tmp/x", "--blocked", "1.5")]
    public void Train_rejects_a_bad_value_at_parse_time(string message, params string[] args)
    {
        var (code, _, error) = Run(TrainCli.BuildRootCommand(), args);
        Assert.Equal(1, code);
        Assert.Contains(message, error);
        Assert.DoesNotContain("   at ", error);   // no stack trace
    }

    [Fact]
    public void Train_eval_names_a_data_file_that_does_not_exist()
    {
        string missing = Path.Combine(Path.GetTempPath(), "kvlink-no-such-data-" + Guid.NewGuid().ToString("N") + ".jsonl");
        var (code, _, error) = Run(TrainCli.BuildRootCommand(), "eval", "--model", Demo(), "--data", missing);
        Assert.Equal(1, code);
        Assert.Contains($"--data: the file '{missing}' does not exist.", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void RagConsole_help_exits_0_and_lists_the_check_command()
    {
        var (code, output, _) = Run(RagConsoleCli.BuildRootCommand(), "--help");
        Assert.Equal(0, code);
        Assert.Contains("--top", output);
        Assert.Contains("check", output);
    }

    [Theory]
    [InlineData("Unrecognized option '--bogus'", "--bogus")]
    [InlineData("Unrecognized command or argument '--bogus'", "{docs}", "--bogus")]
    [InlineData("'abc'", "{docs}", "--top", "abc")]
    [InlineData("--top must be at least 1 (was 0).", "{docs}", "--top", "0")]
    [InlineData("does not exist", "/nope-kvlink-docs")]
    [InlineData("--model: the folder", "{docs}", "--model", "/nope-kvlink-model")]
    public void RagConsole_rejects_a_bad_value_at_parse_time(string message, params string[] args)
    {
        string docs = Path.Combine(MarkdownRoot(), "samples", "KVLink.RagConsole", "sample-docs");
        var (code, _, error) = Run(RagConsoleCli.BuildRootCommand(), [.. args.Select(a => a.Replace("{docs}", docs, StringComparison.Ordinal))]);
        Assert.Equal(1, code);
        Assert.Contains(message, error);
    }

    [Fact]
    public void RagConsole_check_reports_the_demo_model_loadable_and_a_missing_folder_not()
    {
        var (code, output, _) = Run(RagConsoleCli.BuildRootCommand(), "check", Demo());
        Assert.Equal(0, code);
        Assert.Contains("found    config.json: Llama, 4 layers", output);
        Assert.Contains("memory   weights ", output);
        Assert.Contains("cpu      ", output);
        Assert.Contains("OK: the folder should load.", output);

        string missing = Path.Combine(Path.GetTempPath(), "kvlink-no-such-model-" + Guid.NewGuid().ToString("N"));
        (code, output, _) = Run(RagConsoleCli.BuildRootCommand(), "check", missing);
        Assert.Equal(1, code);
        Assert.Contains($"PROBLEM  The folder '{missing}' does not exist.", output);
    }

    private static string Demo() => DemoModel.FindFolder() ?? throw new DirectoryNotFoundException("models/kvlink-demo not found.");

    private static string MarkdownRoot() => KVLink.Core.Tests.Docs.MarkdownDocs.RepoRoot;
}
