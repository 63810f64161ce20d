namespace HostOs.Platform.Disk;

/// <summary>One used GPT entry. <see cref="Number"/> is 1-based, as the kernel numbers partitions.</summary>
public sealed record GptPartition(int Number, Guid Type, Guid Id, ulong FirstLba, ulong LastLba, ulong Attributes, string Name);

/// <summary>Partition type GUIDs from the UAPI Discoverable Partitions Specification.</summary>
public static class PartitionTypes
{
    public static readonly Guid Esp = new("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    public static readonly Guid RootX86_64 = new("4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
    public static readonly Guid Var = new("4d21b016-b534-45c2-a9fb-5c16e091fd2d");
}
