using CsCheck;
using KVLink.Core.Generation;

namespace KVLink.Core.Tests.Generation;

public sealed class StopSequenceMatcherTests
{
    [Fact]
    public void A_stop_sequence_split_over_deltas_ends_the_text_right_before_it()
    {
        var m = new StopSequenceMatcher(["\nUser:"]);
        Assert.Equal("Hello", m.Push("Hello\n"));   // "\n" may begin the stop: held back
        Assert.Equal("", m.Push("Us"));             // "\nUs" still may
        Assert.Equal("", m.Push("er: more"));       // complete: nothing after it is released
        Assert.True(m.Stopped);
        Assert.Equal("", m.Push("later"));
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void Held_text_that_does_not_become_a_stop_is_released_in_order()
    {
        var m = new StopSequenceMatcher(["END"]);
        Assert.Equal("a", m.Push("aEN"));
        Assert.Equal("ENx", m.Push("x"));
        Assert.Equal("", m.Push("E"));
        Assert.Equal("E", m.Flush());
        Assert.False(m.Stopped);
    }

    [Fact]
    public void The_earliest_match_wins_among_several_sequences()
    {
        var m = new StopSequenceMatcher(["world", "lo w"]);
        Assert.Equal("hel", m.Push("hello world"));
    }

    [Fact]
    public void Empty_stop_sequences_are_refused() =>
        Assert.Throws<ArgumentException>(() => new StopSequenceMatcher(["ok", ""]));

    [Fact]
    public void Any_split_of_any_text_releases_exactly_the_text_before_the_first_stop_and_never_retracts()
    {
        // Property: whatever the chunking, the concatenated output is text[..first match] (or all of it), and each
        // push's output is a prefix-extension of what came before (nothing emitted is taken back).
        Gen.Select(Gen.String[Gen.Char["abc"], 0, 30], Gen.Int[1, 5].Array[1, 30]).Sample((text, cuts) =>
        {
            string[] stops = ["ab", "cca", "bbb"];
            var m = new StopSequenceMatcher(stops);
            var output = new System.Text.StringBuilder();
            int at = 0;
            foreach (int n in cuts)
            {
                if (at >= text.Length) break;
                int len = Math.Min(n, text.Length - at);
                output.Append(m.Push(text.Substring(at, len)));
                at += len;
            }
            if (at < text.Length) output.Append(m.Push(text[at..]));
            output.Append(m.Flush());
            int first = stops.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            Assert.Equal(first >= 0 ? text[..first] : text, output.ToString());
            Assert.Equal(first >= 0, m.Stopped);
        });
    }
}
