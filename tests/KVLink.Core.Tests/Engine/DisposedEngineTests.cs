using KVLink.TestSupport;
using System.Reflection;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;

namespace KVLink.Core.Tests.Engine;

/// <summary>After dispose, every public method of the engine throws <see cref="ObjectDisposedException"/> and touches no store.</summary>
public class DisposedEngineTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    public static TheoryData<string> Methods => [.. typeof(KvLinkEngine).GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
        .Where(m => !m.IsSpecialName && m.Name is not (nameof(KvLinkEngine.Dispose) or nameof(KvLinkEngine.DisposeAsync)))
        .Select(Signature).Distinct()];

    [Theory]
    [MemberData(nameof(Methods))]
    public async Task Every_public_method_throws_ObjectDisposedException_after_dispose(string signature)
    {
        var store = new CountingStore();
        var engine = fx.Engine(store: store);
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(1, 4));
        long before = store.Statistics.Writes + store.Statistics.Removals;
        await engine.DisposeAsync();

        var method = typeof(KvLinkEngine).GetMethods().Single(m => Signature(m) == signature);
        var args = method.GetParameters().Select(p => Argument(p.ParameterType, id)).ToArray();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => Invoke(engine, method, args));
        Assert.Equal(before, store.Statistics.Writes + store.Statistics.Removals);
    }

    private static string Signature(MethodInfo m) => $"{m.Name}({string.Join(", ", m.GetParameters().Select(p => p.ParameterType.Name))})";

    private static object? Argument(Type t, string id) => t switch
    {
        _ when t == typeof(string) => id,
        _ when t == typeof(int) => 1,
        _ when t == typeof(CancellationToken) => CancellationToken.None,
        _ when t == typeof(KvLinkDocument) => CheckpointFixture.Doc(2, 4),
        _ when t == typeof(IReadOnlyList<string>) => new[] { id },
        _ when t == typeof(IEnumerable<KvLinkDocument>) => new[] { CheckpointFixture.Doc(3, 4) },
        _ when t == typeof(IAsyncEnumerable<KvLinkDocument>) => new[] { CheckpointFixture.Doc(3, 4) }.ToAsyncEnumerable(),
        _ when t == typeof(GenerationOptions) => null,
        _ when !t.IsValueType => null,
        _ => throw new InvalidOperationException($"No test argument for {t}: extend {nameof(Argument)}."),
    };

    private static async Task Invoke(KvLinkEngine engine, MethodInfo method, object?[] args)
    {
        object? result;
        try { result = method.Invoke(engine, args); }
        catch (TargetInvocationException e) { throw e.InnerException!; }
        switch (result)
        {
            case Task task: await task; break;
            case IAsyncEnumerable<GenerationUpdate> stream: await foreach (var _ in stream) { } break;
        }
    }
}
