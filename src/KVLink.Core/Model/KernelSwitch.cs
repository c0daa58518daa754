namespace KVLink.Core.Model;

/// <summary>
/// A per-thread switch that sends one of our kernels' work back to LibTorch (tests: the reference the kernel must equal).
/// Each kernel holds one; <see cref="Off"/> holds for the calling thread until the scope is disposed.
/// </summary>
internal sealed class KernelSwitch
{
    private readonly ThreadLocal<bool> _off = new();

    /// <summary>Whether this thread has the kernel switched off.</summary>
    public bool IsOff => _off.Value;

    /// <summary>Switches the kernel off for this thread until the returned scope is disposed.</summary>
    public Scope Off()
    {
        bool previous = _off.Value;
        _off.Value = true;
        return new Scope(this, previous);
    }

    /// <summary>Restores the thread's choice from before <see cref="Off"/>.</summary>
    public readonly struct Scope(KernelSwitch owner, bool previous) : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => owner._off.Value = previous;
    }
}
