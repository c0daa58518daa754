namespace KVLink.Core.Tests.Docs;

/// <summary>
/// Every relative link of the documentation (README.md, docs/*.md, samples' and benchmarks' READMEs, PACKAGE.md files)
/// resolves to a file or folder of the repository, and a <c>#anchor</c> to a heading of the target Markdown file.
/// A package readme (PACKAGE.md) is shown on nuget.org, where relative links lead nowhere: it may only link absolutely.
/// </summary>
public sealed class DocLinkTests
{
    [Fact]
    public void Every_relative_link_of_the_docs_resolves()
    {
        var files = MarkdownDocs.Files();
        Assert.Contains("README.md", files);
        Assert.Contains(files, f => f.StartsWith("docs/", StringComparison.Ordinal));

        var failures = new List<string>();
        int checkedLinks = 0;
        foreach (string file in files)
            foreach (var link in MarkdownDocs.Links(file))
            {
                string target = Uri.UnescapeDataString(link.Target);
                if (target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
                    continue;
                checkedLinks++;
                if (MarkdownDocs.IsPackageReadme(file))
                {
                    failures.Add($"{link}: a package readme is shown on nuget.org; link absolutely (https://...)");
                    continue;
                }
                if (Resolve(file, target) is { } problem)
                    failures.Add($"{link}: {problem}");
            }

        Assert.True(checkedLinks > 10, $"only {checkedLinks} relative links found: is the link scan broken?");
        Assert.True(failures.Count == 0, $"{failures.Count} broken link(s):\n" + string.Join('\n', failures));
    }

    /// <summary>
    /// Links to this repository's own URL (<c>PackageProjectUrl</c> of Directory.Build.props, e.g. the package readmes'
    /// links to docs/) name files that exist here, with anchors that exist, so a renamed doc cannot leave them dangling.
    /// </summary>
    [Fact]
    public void Every_link_to_the_repository_URL_names_a_file_of_the_repository()
    {
        string props = File.ReadAllText(Path.Combine(MarkdownDocs.RepoRoot, "Directory.Build.props"));
        var match = System.Text.RegularExpressions.Regex.Match(props, "<PackageProjectUrl>(https://[^<]+)</PackageProjectUrl>");
        Assert.True(match.Success, "Directory.Build.props has no PackageProjectUrl");
        string home = match.Groups[1].Value.TrimEnd('/');

        var failures = new List<string>();
        int checkedLinks = 0;
        foreach (string file in MarkdownDocs.Files())
            foreach (var link in MarkdownDocs.Links(file))
            {
                if (!link.Target.StartsWith(home + "/", StringComparison.Ordinal)) continue;
                checkedLinks++;
                string rest = link.Target[(home.Length + 1)..];
                string? path = rest.StartsWith("blob/main/", StringComparison.Ordinal) ? rest["blob/main/".Length..]
                    : rest.StartsWith("tree/main/", StringComparison.Ordinal) ? rest["tree/main/".Length..] : null;
                if (path is null) { failures.Add($"{link}: expected {home}/blob/main/<file> or /tree/main/<folder>"); continue; }
                // As a link relative to the repository root (README.md sits there).
                if (Resolve("README.md", Uri.UnescapeDataString(path)) is { } problem) failures.Add($"{link}: {problem}");
            }

        Assert.True(checkedLinks >= 4, $"only {checkedLinks} links to {home} found: the package readmes should link to the docs by URL");
        Assert.True(failures.Count == 0, $"{failures.Count} broken link(s):\n" + string.Join('\n', failures));
    }

    [Fact]
    public void Anchors_follow_GitHub_slugs()
    {
        Assert.Equal("5-aspnet-core-configuration-gpu", MarkdownDocs.Slug("5. ASP.NET Core, configuration, GPU"));
        Assert.Equal("compression-kvlinkcompression", MarkdownDocs.Slug("Compression (`KvLink:Compression:*`)"));
        Assert.Equal("debian-12--ubuntu-2204-torchsharps-native-library", MarkdownDocs.Slug("Debian 12 / Ubuntu 22.04: TorchSharp's native library"));
    }

    /// <summary>Null when the link resolves, else why not.</summary>
    private static string? Resolve(string file, string target)
    {
        int hash = target.IndexOf('#');
        string path = hash < 0 ? target : target[..hash];
        string? anchor = hash < 0 ? null : target[(hash + 1)..];
        if (path.StartsWith('/'))
            return "absolute path: link relative to the file so it works in any clone and on GitHub";

        string root = Path.GetFullPath(MarkdownDocs.RepoRoot);
        string targetFile = path.Length == 0
            ? Path.Combine(root, file)
            : Path.GetFullPath(Path.Combine(root, Path.GetDirectoryName(file) ?? "", path));
        if (!targetFile.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            return "points outside the repository";
        if (!File.Exists(targetFile) && !Directory.Exists(targetFile))
            return $"no such file or folder ({Path.GetRelativePath(root, targetFile)})";

        if (anchor is { Length: > 0 } && targetFile.EndsWith(".md", StringComparison.OrdinalIgnoreCase) && File.Exists(targetFile))
        {
            string relative = Path.GetRelativePath(root, targetFile).Replace('\\', '/');
            if (!MarkdownDocs.Anchors(relative).Contains(anchor))
                return $"no heading #{anchor} in {relative}";
        }
        return null;
    }
}
