using static TorchSharp.torch;

namespace KVLink.Core.Caching;

/// <summary>
/// Moves a stored document cache to the model's device for one request. Called on the engine's model
/// thread inside the request's dispose scope: tensors it creates are freed when the request ends, and it
/// must not dispose or change the entry's own tensors. The default (no transfer) lets the attention cache
/// copy straight from the entry, which is right when the model runs on the CPU.
/// </summary>
internal interface IKvCacheTransfer
{
    /// <summary>Keys and values of <paramref name="entry"/> ready to copy into a cache on <paramref name="device"/>.</summary>
    (Tensor Keys, Tensor Values) ToDevice(DocumentKvCache entry, Device device);
}
