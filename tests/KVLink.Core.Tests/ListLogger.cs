using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace KVLink.Core.Tests;

/// <summary>A real <see cref="ILogger"/> that keeps every entry (event id, level, formatted message), for tests of what the engine logs.</summary>
internal sealed class ListLogger : ILogger
{
    public ConcurrentBag<(int Id, LogLevel Level, string Message)> Entries { get; } = [];
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Add((eventId.Id, logLevel, formatter(state, exception)));
}
