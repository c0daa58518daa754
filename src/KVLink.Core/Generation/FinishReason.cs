namespace KVLink.Core.Generation;

/// <summary>Why generation ended.</summary>
public enum FinishReason
{
    /// <summary>A stop token was generated.</summary>
    Stop,
    /// <summary>MaxNewTokens was reached.</summary>
    Length,
}
