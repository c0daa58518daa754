using KVLink.Core.Caching;
using KVLink.Core.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace KVLink.Core.Redis;

/// <summary><c>UseRedisStore()</c> for the DI builder returned by <c>AddKvLink</c>.</summary>
public static class KvLinkRedisExtensions
{
    /// <summary>
    /// Stores this engine's document caches in Redis through the <see cref="IConnectionMultiplexer"/> registered in the
    /// container (register one with <c>services.AddSingleton&lt;IConnectionMultiplexer&gt;(ConnectionMultiplexer.Connect(...))</c>).
    /// </summary>
    public static KvLinkBuilder UseRedisStore(this KvLinkBuilder builder, Action<RedisKvCacheStoreOptions>? configure = null) =>
        UseRedisStore(builder, sp => sp.GetRequiredService<IConnectionMultiplexer>(), configure);

    /// <summary>Stores this engine's document caches in Redis through the connection <paramref name="connection"/> returns.</summary>
    public static KvLinkBuilder UseRedisStore(this KvLinkBuilder builder, Func<IServiceProvider, IConnectionMultiplexer> connection, Action<RedisKvCacheStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(connection);
        return builder.UseStore(sp =>
        {
            var options = new RedisKvCacheStoreOptions
            {
                Logger = sp.GetService<ILoggerFactory>()?.CreateLogger<RedisKvCacheStore>(),
                TimeProvider = sp.GetService<TimeProvider>(),
            };
            configure?.Invoke(options);
            return new RedisKvCacheStore(connection(sp), options);
        });
    }
}
