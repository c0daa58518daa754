using KVLink.Core.Engine;

namespace KVLink.Core.Tests.Samples;

/// <summary>The RagConsole's progress bar, fed reports in the order parallel encoders can deliver them.</summary>
public sealed class ProgressBarTests
{
    [Fact]
    public void A_report_behind_the_one_shown_is_dropped()
    {
        var output = new StringWriter();
        var bar = new KVLink.RagConsole.ProgressBar(4, output);
        foreach (int done in new[] { 1, 4, 2, 3 })
            bar.Report(new KvLinkIndexingProgress(done, 4, done * 10, done * 10, TimeSpan.FromSeconds(done)));

        var shown = output.ToString().Split('\r', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(']')[1].Trim().Split(' ')[0]).ToList();
        Assert.Equal(["1/4", "4/4"], shown);
    }
}
