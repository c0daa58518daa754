using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Caching.Distributed;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Caching;

/// <summary>
/// What a store asked of its server, recorded on the client side: every command (a method of <see cref="IDatabase"/> or a
/// call of <see cref="IDistributedCache"/>) with the keys it named. Tests assert on this instead of on elapsed time.
/// </summary>
public sealed class CommandRecorder
{
    private readonly ConcurrentQueue<(string Command, string[] Keys)> _commands = new();

    public IReadOnlyList<(string Command, string[] Keys)> Commands => [.. _commands];

    public void Clear() => _commands.Clear();

    internal void Add(string command, string[] keys) => _commands.Enqueue((command, keys));

    /// <summary>The connection, whose databases record every command before sending it.</summary>
    public IConnectionMultiplexer Wrap(IConnectionMultiplexer connection)
    {
        var proxy = DispatchProxy.Create<IConnectionMultiplexer, ConnectionProxy>();
        ((ConnectionProxy)(object)proxy).Init(connection, this);
        return proxy;
    }

    /// <summary>The cache, recording every call (reads, writes, removals, refreshes) and the key it names.</summary>
    public IDistributedCache Wrap(IDistributedCache cache) => new RecordingCache(cache, this);

    internal static object? Forward(object target, MethodInfo method, object?[]? args)
    {
        try { return method.Invoke(target, args); }
        catch (TargetInvocationException e) when (e.InnerException is not null) { ExceptionDispatchInfo.Throw(e.InnerException); throw; }
    }

#pragma warning disable CA1812, CA1852 // created by DispatchProxy
    public class ConnectionProxy : DispatchProxy
    {
        private IConnectionMultiplexer _target = null!;
        private CommandRecorder _recorder = null!;

        internal void Init(IConnectionMultiplexer target, CommandRecorder recorder) { _target = target; _recorder = recorder; }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            var result = Forward(_target, targetMethod!, args);
            if (result is not IDatabase db) return result;
            var proxy = Create<IDatabase, DatabaseProxy>();
            ((DatabaseProxy)(object)proxy).Init(db, _recorder);
            return proxy;
        }
    }

    public class DatabaseProxy : DispatchProxy
    {
        private IDatabase _target = null!;
        private CommandRecorder _recorder = null!;

        internal void Init(IDatabase target, CommandRecorder recorder) { _target = target; _recorder = recorder; }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            var keys = new List<string>();
            foreach (var a in args ?? [])
            {
                if (a is RedisKey k) keys.Add(k.ToString());
                else if (a is RedisKey[] ks) keys.AddRange(ks.Select(x => x.ToString()));
            }
            _recorder.Add(targetMethod!.Name, [.. keys]);
            return Forward(_target, targetMethod, args);
        }
    }
#pragma warning restore CA1812, CA1852

    private sealed class RecordingCache(IDistributedCache inner, CommandRecorder recorder) : IDistributedCache
    {
        public byte[]? Get(string key) { recorder.Add(nameof(Get), [key]); return inner.Get(key); }
        public Task<byte[]?> GetAsync(string key, CancellationToken token = default) { recorder.Add(nameof(GetAsync), [key]); return inner.GetAsync(key, token); }
        public void Set(string key, byte[] value, DistributedCacheEntryOptions options) { recorder.Add(nameof(Set), [key]); inner.Set(key, value, options); }
        public Task SetAsync(string key, byte[] value, DistributedCacheEntryOptions options, CancellationToken token = default) { recorder.Add(nameof(SetAsync), [key]); return inner.SetAsync(key, value, options, token); }
        public void Refresh(string key) { recorder.Add(nameof(Refresh), [key]); inner.Refresh(key); }
        public Task RefreshAsync(string key, CancellationToken token = default) { recorder.Add(nameof(RefreshAsync), [key]); return inner.RefreshAsync(key, token); }
        public void Remove(string key) { recorder.Add(nameof(Remove), [key]); inner.Remove(key); }
        public Task RemoveAsync(string key, CancellationToken token = default) { recorder.Add(nameof(RemoveAsync), [key]); return inner.RemoveAsync(key, token); }
    }
}
