namespace HostOs.Platform.Interop;

public static partial class Sys
{
    /// <summary>The highest capability number the runtime knows (CAP_CHECKPOINT_RESTORE, Linux 5.9+): capability sets are set by hostos-stage.</summary>
    public const int LastCapability = 40;
}
