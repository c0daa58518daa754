using System.Reflection;

namespace KVLink.Core.Tests.Docs;

/// <summary>
/// docs/configuration.md documents every public settable option: for each public <c>*Options</c> class of the shipped
/// assemblies (KVLink.Core: KvLinkOptions and the option objects it holds, the store options; KVLink.Core.Redis;
/// KVLink.Core.Cuda), found by reflection, a heading names the type and its section mentions each settable property
/// (declared on that type) as <c>`Name`</c>.
/// </summary>
public sealed class DocOptionsTests
{
    private static readonly string[] ShippedAssemblies = ["KVLink.Core", "KVLink.Core.Redis", "KVLink.Core.Cuda"];

    public static IEnumerable<Type> OptionTypes() =>
        ShippedAssemblies.Select(name => Assembly.Load(name))
            .SelectMany(a => a.GetExportedTypes())
            .Where(t => t.IsClass && !t.IsAbstract && t.Name.EndsWith("Options", StringComparison.Ordinal) && SettableProperties(t).Any())
            .OrderBy(t => t.FullName, StringComparer.Ordinal);

    /// <summary>Public properties with a public setter or init accessor, declared on the type itself (a base's are documented with the base).</summary>
    public static IEnumerable<string> SettableProperties(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
            .Where(p => p.SetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract")
            .Select(p => p.Name);

    [Fact]
    public void The_option_types_are_found()
    {
        var names = OptionTypes().Select(t => t.Name).ToList();
        Assert.Contains("KvLinkOptions", names);
        Assert.Contains("KvLinkCudaOptions", names);
        Assert.Contains(names, n => n.StartsWith("Redis", StringComparison.Ordinal));
        Assert.True(names.Count(n => n.EndsWith("StoreOptions", StringComparison.Ordinal)) >= 3, string.Join(", ", names));
        // Every option object KvLinkOptions holds is one of them.
        var kvLinkOptions = OptionTypes().Single(t => t.Name == "KvLinkOptions");
        foreach (var nested in kvLinkOptions.GetProperties().Select(p => p.PropertyType).Where(t => t.Name.EndsWith("Options", StringComparison.Ordinal)))
            Assert.Contains(nested.Name, names);
    }

    [Fact]
    public void Configuration_md_mentions_every_settable_option()
    {
        string[] lines = File.ReadAllLines(Path.Combine(MarkdownDocs.RepoRoot, "docs", "configuration.md"));
        var headings = MarkdownDocs.Headings(lines);
        var missing = new List<string>();
        foreach (var type in OptionTypes())
        {
            // The section of the first heading that names the type, down to the next heading of the same or a higher level.
            int h = headings.ToList().FindIndex(x => x.Text.Contains(type.Name, StringComparison.Ordinal));
            if (h < 0)
            {
                missing.Add($"{type.FullName}: no heading of docs/configuration.md names it");
                continue;
            }
            int end = headings.Skip(h + 1).FirstOrDefault(x => x.Level <= headings[h].Level) is { Text: not null } next ? next.Index : lines.Length;
            string section = string.Join('\n', lines[headings[h].Index..end]);
            foreach (string property in SettableProperties(type))
                if (!section.Contains($"`{property}`", StringComparison.Ordinal))
                    missing.Add($"{type.FullName}.{property}: not mentioned as `{property}` under \"{headings[h].Text}\"");
        }
        Assert.True(missing.Count == 0, $"docs/configuration.md misses {missing.Count} option(s):\n" + string.Join('\n', missing));
    }
}
