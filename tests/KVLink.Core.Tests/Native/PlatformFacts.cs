using System.Runtime.InteropServices;

namespace KVLink.Core.Tests.Native;

/// <summary>A fact about Linux x64 behaviour (TorchSharp's loader, LibTorch's symbols); elsewhere reported as skipped, with the reason.</summary>
public sealed class LinuxX64FactAttribute : FactAttribute
{
    public LinuxX64FactAttribute()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
            Skip = $"Linux x64 only; this is {RuntimeInformation.OSDescription} {RuntimeInformation.ProcessArchitecture}.";
    }
}

/// <summary>A fact about Linux behaviour (LibTorch's OpenMP runtime, /proc); elsewhere reported as skipped, with the reason.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = $"Linux only; this is {RuntimeInformation.OSDescription}.";
    }
}

/// <summary>
/// A fact that checks what an environment switch does (an ISA switched off for .NET or LibTorch): it runs only in a
/// process started with <c>name</c> set (to <c>value</c>, where given), as .ci/run's fallback passes do, and is reported
/// as skipped elsewhere.
/// </summary>
public sealed class EnvironmentFactAttribute : FactAttribute
{
    public EnvironmentFactAttribute(string name, string? value = null)
    {
        string? actual = Environment.GetEnvironmentVariable(name);
        if (actual is null || (value is not null && actual != value))
            Skip = $"runs where {name}{(value is null ? "" : "=" + value)} is set (.ci/run's fallback passes); here it is {(actual is null ? "unset" : actual)}.";
    }
}
