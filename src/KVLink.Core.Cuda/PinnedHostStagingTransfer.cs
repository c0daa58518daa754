using KVLink.Core.Caching;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Cuda;

/// <summary>
/// Moves caches held in CPU memory to a CUDA device through page-locked (pinned) host memory with an
/// asynchronous copy, so the transfer runs at full PCIe bandwidth and overlaps with queuing the next copy.
/// Entries already on the device, and any target that is not CUDA, are passed through untouched.
/// <c>UseCuda()</c> sets its <see cref="ToDevice"/> as <see cref="Engine.KvLinkOptions.CacheTransfer"/>, which runs on the
/// engine's model thread inside the request's dispose scope.
/// </summary>
/// <remarks>
/// Each request pins a fresh copy; stores that keep entries pinned (or on the device) avoid that copy. A pooled
/// pinned buffer is the next step. This path can only be exercised on a CUDA machine.
/// </remarks>
public sealed class PinnedHostStagingTransfer
{
    /// <summary>Keys and values of <paramref name="entry"/> ready to copy into a cache on <paramref name="device"/>: staged copies for a CPU entry and a CUDA device, else the entry's own tensors.</summary>
    public (Tensor Keys, Tensor Values) ToDevice(DocumentKvCache entry, Device device)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(device);
        if (device.type != DeviceType.CUDA || entry.Keys.device_type != DeviceType.CPU) return (entry.Keys, entry.Values);
        return (Stage(entry.Keys, device), Stage(entry.Values, device));
    }

    private static Tensor Stage(Tensor host, Device device)
    {
        // The CUDA host allocator keeps the pinned block alive until the asynchronous copy has completed.
        using var pinned = host.is_pinned() ? host.alias() : host.pin_memory();
        return pinned.to(device, non_blocking: true);
    }
}
