using System.Text.RegularExpressions;

namespace KVLink.Core.Tests.Docs;

/// <summary>The repository's Markdown documentation: which files count, their fenced code blocks and their links.</summary>
internal static partial class MarkdownDocs
{
    /// <summary>The repository root: the first folder above the test binaries that holds KVLink.Core.sln.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "KVLink.Core.sln")))
                return dir.FullName;
        throw new InvalidOperationException($"No KVLink.Core.sln above {AppContext.BaseDirectory}.");
    }

    /// <summary>
    /// The documentation a user reads: README.md, docs/*.md, every project's PACKAGE.md (the NuGet readme) and the
    /// READMEs of samples, benchmarks and models. Paths are relative to the repository root, with '/'.
    /// </summary>
    public static IReadOnlyList<string> Files()
    {
        var files = new List<string> { "README.md" };
        void Add(string folder, string pattern, SearchOption option)
        {
            string full = Path.Combine(RepoRoot, folder);
            if (!Directory.Exists(full)) return;
            files.AddRange(Directory.EnumerateFiles(full, pattern, option)
                .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}") &&
                            !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
                .Select(f => Path.GetRelativePath(RepoRoot, f).Replace('\\', '/')));
        }
        Add("docs", "*.md", SearchOption.TopDirectoryOnly);
        Add("src", "PACKAGE.md", SearchOption.AllDirectories);
        Add("samples", "README.md", SearchOption.AllDirectories);
        Add("benchmarks", "README.md", SearchOption.AllDirectories);
        Add("models", "README.md", SearchOption.TopDirectoryOnly);
        return files.Distinct().Order(StringComparer.Ordinal).ToList();
    }

    public static bool IsPackageReadme(string file) => Path.GetFileName(file) == "PACKAGE.md";

    /// <summary>A fenced code block: the file, the 1-based line of its opening fence, its info string and its text.</summary>
    public sealed record CodeBlock(string File, int Line, string Info, string Code)
    {
        public string Language => Info.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
        public bool Has(string flag) => Info.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Contains(flag);
        public override string ToString() => $"{File}:{Line}";
    }

    /// <summary>Every fenced (```) code block of a file; an indented fence (inside a list item) is dedented by its indent.</summary>
    public static IReadOnlyList<CodeBlock> CodeBlocks(string file)
    {
        var lines = File.ReadAllLines(Path.Combine(RepoRoot, file));
        var blocks = new List<CodeBlock>();
        for (int i = 0; i < lines.Length; i++)
        {
            var open = Fence().Match(lines[i]);
            if (!open.Success) continue;
            int indent = open.Groups["indent"].Length;
            string info = open.Groups["info"].Value.Trim();
            var body = new List<string>();
            int j = i + 1;
            for (; j < lines.Length && !ClosingFence().IsMatch(lines[j]); j++)
                body.Add(lines[j].Length >= indent && string.IsNullOrWhiteSpace(lines[j][..indent]) ? lines[j][indent..] : lines[j].TrimStart());
            blocks.Add(new CodeBlock(file, i + 1, info, string.Join('\n', body)));
            i = j;
        }
        return blocks;
    }

    /// <summary>A Markdown link or image target: the file, its 1-based line and the target as written.</summary>
    public sealed record Link(string File, int Line, string Target)
    {
        public override string ToString() => $"{File}:{Line}: ({Target})";
    }

    /// <summary>Inline links and images (<c>[text](target)</c>, <c>![alt](target)</c>) outside code blocks and code spans.</summary>
    public static IReadOnlyList<Link> Links(string file)
    {
        var links = new List<Link>();
        bool inFence = false;
        var lines = File.ReadAllLines(Path.Combine(RepoRoot, file));
        for (int i = 0; i < lines.Length; i++)
        {
            if (Fence().IsMatch(lines[i])) { inFence = !inFence; continue; }
            if (inFence) continue;
            string text = CodeSpan().Replace(lines[i], "");
            foreach (Match m in InlineLink().Matches(text))
                links.Add(new Link(file, i + 1, m.Groups["target"].Value));
        }
        return links;
    }

    /// <summary>The GitHub anchors of a file's headings (lower case, punctuation dropped, spaces to '-', duplicates -1, -2...).</summary>
    public static IReadOnlySet<string> Anchors(string file)
    {
        var anchors = new HashSet<string>(StringComparer.Ordinal);
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        bool inFence = false;
        foreach (string line in File.ReadAllLines(Path.Combine(RepoRoot, file)))
        {
            if (Fence().IsMatch(line)) { inFence = !inFence; continue; }
            if (inFence) continue;
            var h = Heading().Match(line);
            if (!h.Success) continue;
            string slug = Slug(h.Groups["text"].Value);
            int n = seen.GetValueOrDefault(slug);
            seen[slug] = n + 1;
            anchors.Add(n == 0 ? slug : $"{slug}-{n}");
        }
        return anchors;
    }

    public static string Slug(string heading)
    {
        string text = InlineLinkText().Replace(heading.Trim(), "${text}").ToLowerInvariant();
        var sb = new System.Text.StringBuilder();
        foreach (char c in text)
        {
            if (char.IsLetterOrDigit(c) || c is '-' or '_') sb.Append(c);
            else if (c == ' ') sb.Append('-');
        }
        return sb.ToString();
    }

    /// <summary>Markdown headings (<c>#</c> to <c>######</c>) of a file with their levels and 0-based line indexes.</summary>
    public static IReadOnlyList<(int Level, string Text, int Index)> Headings(string[] lines)
    {
        var result = new List<(int, string, int)>();
        bool inFence = false;
        for (int i = 0; i < lines.Length; i++)
        {
            if (Fence().IsMatch(lines[i])) { inFence = !inFence; continue; }
            if (inFence) continue;
            var h = Heading().Match(lines[i]);
            if (h.Success) result.Add((h.Groups["hashes"].Length, h.Groups["text"].Value.Trim(), i));
        }
        return result;
    }

    [GeneratedRegex(@"^(?<indent>\s*)```(?<info>[^`]*)$")]
    private static partial Regex Fence();

    [GeneratedRegex(@"^\s*```\s*$")]
    private static partial Regex ClosingFence();

    [GeneratedRegex(@"`[^`]*`")]
    private static partial Regex CodeSpan();

    [GeneratedRegex(@"!?\[[^\]]*\]\((?<target>[^)\s]+)(\s+""[^""]*"")?\)")]
    private static partial Regex InlineLink();

    [GeneratedRegex(@"\[(?<text>[^\]]*)\]\([^)]*\)")]
    private static partial Regex InlineLinkText();

    [GeneratedRegex(@"^(?<hashes>#{1,6})\s+(?<text>.+?)\s*#*\s*$")]
    private static partial Regex Heading();
}
