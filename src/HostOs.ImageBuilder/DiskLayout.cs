namespace HostOs.ImageBuilder;

/// <summary>
/// Where each partition of the GPT disk sits, in MiB (1 MiB alignment): the protective
/// MBR and primary GPT in the first MiB, then ESP, root-a, root-b, state, and the backup
/// GPT in the last MiB. A pure value, so the layout is tested without building a disk.
/// </summary>
internal sealed record DiskLayout(int EspMiB, int SlotMiB, int StateMiB)
{
    public const string EspType = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    public const string RootType = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"; // DPS root, x86-64
    public const string VarType = "4d21b016-b534-45c2-a9fb-5c16e091fd2d";  // DPS /var

    public sealed record Partition(int Number, string Label, string Type, int StartMiB, int SizeMiB);

    public IReadOnlyList<Partition> Partitions =>
    [
        new(1, "esp", EspType, 1, EspMiB),
        new(2, "root-a", RootType, 1 + EspMiB, SlotMiB),
        new(3, "root-b", RootType, 1 + EspMiB + SlotMiB, SlotMiB),
        new(4, "state", VarType, 1 + EspMiB + 2 * SlotMiB, StateMiB),
    ];

    public int TotalMiB => 1 + EspMiB + 2 * SlotMiB + StateMiB + 1;
}
