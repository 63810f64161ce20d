using HostOs.Platform.Boot;
using HostOs.Platform.Config;
using HostOs.Platform.Disk;
using HostOs.Platform.Kernel;
using HostOs.Updater.Payload;
using NSec.Cryptography;

namespace HostOs.Updater.Machine;

/// <summary>
/// The two root slots of a machine: the one running (its partition is the source of a
/// delta and is never written) and the other (where an update goes). Paths are devices on
/// a machine and image files in tests.
/// </summary>
public sealed record SlotLayout(string RunningSlot, string RunningVersion, string RunningDevice, string InactiveSlot, string InactiveDevice)
{
    public static string Other(string slot) => slot switch
    {
        "a" => "b",
        "b" => "a",
        _ => throw new IOException($"slot '{slot}' is neither a nor b"),
    };

    /// <summary>
    /// This machine's layout: the running slot and version from the kernel command line
    /// (hostos.slot=, hostos.version=, written into every entry), the slots as the GPT
    /// partitions labelled root-a and root-b on the disk the running root is on.
    /// </summary>
    public static (SlotLayout Layout, BlockPartition Esp) Discover(string cmdlinePath = "/proc/cmdline")
    {
        var cmdline = KernelCommandLine.Parse(File.ReadAllText(cmdlinePath));
        string slot = cmdline.Get("hostos.slot") ?? throw new IOException($"{cmdlinePath} names no hostos.slot: not booted from a HostOS entry");
        string version = cmdline.Get("hostos.version") ?? throw new IOException($"{cmdlinePath} names no hostos.version");
        if (cmdline.Has("hostos.root")) throw new IOException("the root was given with hostos.root=, not as a slot: A/B updates need the slot layout");
        string other = Other(slot);
        List<BlockPartition> partitions = BlockDevices.Scan();
        BlockPartition running = partitions.FirstOrDefault(p => p.Entry.Name == "root-" + slot)
            ?? throw new IOException($"no partition labelled root-{slot} (the running slot)");
        BlockPartition inactive = partitions.FirstOrDefault(p => p.Entry.Name == "root-" + other && p.Disk == running.Disk)
            ?? throw new IOException($"no partition labelled root-{other} on {running.Disk}: this disk has one slot, it cannot be updated A/B");
        return (new SlotLayout(slot, version, running.Device, other, inactive.Device), Esp.Find(partitions, running.Disk));
    }
}

/// <summary>What the ESP and the boot records say about this machine's versions.</summary>
public sealed record SlotStatus(
    string RunningVersion,
    string RunningSlot,
    IReadOnlyList<InstalledEntry> Entries,
    /// <summary>The version the next boot starts when it is not the running one (an installed update, or a rollback).</summary>
    string? NextBoot,
    /// <summary>Set when this boot is the result of falling back from a newer version, with why.</summary>
    string? RolledBackFrom,
    string? RollbackReason);

/// <summary>
/// Installs a payload on a machine, A/B (docs/updates.md, "On a machine"). The order:
/// the payload's head verified (signature, version newer, a delta's source is the running
/// version) → the entry of the version that still points at the inactive slot removed
/// (just before the first write to it) → the slot written and verified → kernel and
/// initramfs into <c>hostos/VERSION/</c> on the ESP (synced, renamed once all verified) →
/// the new entry <c>hostos-VERSION+3.conf</c> written, synced, renamed into place: from
/// that rename on, it is the newest entry with tries left and systemd-boot boots it next.
/// Interrupted anywhere before that rename, the ESP boots what it booted before.
/// The trusted keys are asked for only by an install: status and rollback never depend
/// on the update settings being readable.
/// </summary>
public sealed class SlotUpdater(SlotLayout layout, string espRoot, Func<IReadOnlyList<PublicKey>> trusted, Action<string>? say = null,
    string bootRecords = BootRecord.Directory)
{
    public SlotLayout Layout => layout;

    /// <summary>The running version's boot is still being judged (its entry counted): no update now.</summary>
    public bool RunningOnTrial => RunningEntry().Name.IsCounted;

    public PayloadManifest Install(Stream payload, bool allowDowngrade, Action<PayloadApplier.Progress>? progress = null, CancellationToken cancel = default)
    {
        InstalledEntry running = RunningEntry();
        if (running.Name.IsCounted)
        {
            throw new PayloadException($"the running version {layout.RunningVersion} is still on trial ({running.Name.FileName}): " +
                                       "an update waits until its boot is blessed (or rolled back)");
        }
        PayloadManifest installed = new PayloadApplier(trusted(), say).Apply(payload, manifest =>
        {
            if (manifest.Version == layout.RunningVersion)
            {
                throw new PayloadException($"{manifest.Version} is the running version: it cannot be installed beside itself");
            }
            string bootDir = BootEntryFiles.BootDirectory(espRoot, manifest.Version);
            return new ApplyTarget(layout.InactiveDevice, layout.RunningDevice, bootDir,
                BootEntryFiles.BootDirectory(espRoot, layout.RunningVersion),
                BeforeFirstWrite: () => ReleaseInactiveSlot(manifest.Version));
        }, layout.RunningVersion, allowDowngrade, progress, cancel);
        return Finish(installed);
    }

    private PayloadManifest Finish(PayloadManifest manifest)
    {
        BootRecord.Forget(manifest.Version, bootRecords);
        var options = BootEntryFiles.Options(manifest.Cmdline, layout.InactiveSlot, manifest.Version);
        BootEntryName entry = BootEntryFiles.Write(espRoot, manifest.Version, options);
        say?.Invoke($"boot entry {entry.FileName} written: the next boot starts {manifest.Version} from slot {layout.InactiveSlot} " +
                    $"({BootEntryFiles.Tries} tries; blessed once healthy, else back to {layout.RunningVersion})");
        return manifest;
    }

    /// <summary>Every entry that boots the inactive slot, or that has the new version's name, goes before the slot is overwritten.</summary>
    private void ReleaseInactiveSlot(string newVersion)
    {
        foreach (InstalledEntry e in BootEntryFiles.List(espRoot))
        {
            bool onInactive = e.Slot == layout.InactiveSlot;
            if (!onInactive && e.Version != newVersion) continue;
            if (e.Version == layout.RunningVersion) continue;
            BootEntryFiles.Remove(espRoot, e);
            say?.Invoke($"boot entry {e.Name.FileName} removed: slot {layout.InactiveSlot} is being rewritten");
        }
        // The new version's boot directory may hold files of an earlier, failed attempt: the
        // applier writes every file anew (temporary name, then rename), so they are harmless.
    }

    private InstalledEntry RunningEntry() =>
        BootEntryFiles.List(espRoot).FirstOrDefault(e => e.Version == layout.RunningVersion && e.Slot == layout.RunningSlot)
        ?? throw new IOException($"the ESP has no entry for the running version {layout.RunningVersion} (slot {layout.RunningSlot})");

    /// <summary>Entries in systemd-boot's order (good before bad, then newest first): the first is what boots next.</summary>
    public static List<InstalledEntry> BootOrder(IEnumerable<InstalledEntry> entries) =>
        entries.OrderBy(e => e.Name.IsBad)
            .ThenByDescending(e => SemanticVersion.TryParse(e.Version, out var v) ? v : default)
            .ToList();

    public SlotStatus Status()
    {
        List<InstalledEntry> entries = BootOrder(BootEntryFiles.List(espRoot));
        string? next = entries.Count > 0 && entries[0].Version != layout.RunningVersion ? entries[0].Version : null;
        SemanticVersion.TryParse(layout.RunningVersion, out SemanticVersion current);
        InstalledEntry? failed = entries
            .Where(e => e.Name.IsBad && e.Slot == layout.InactiveSlot && SemanticVersion.TryParse(e.Version, out var v) && v > current)
            .FirstOrDefault();
        string? reason = null;
        if (failed is not null)
        {
            BootRecord? record = BootRecord.Read(failed.Version, bootRecords);
            reason = record?.Verdict switch
            {
                null => "it never reached its boot assessment in any of its tries (kernel or early-boot failure: no verdict was recorded)",
                string v when v.StartsWith("failed: ", StringComparison.Ordinal) => v["failed: ".Length..],
                "healthy" => "it was healthy once but ran out of tries before it was blessed",
                string v => v,
            };
        }
        return new SlotStatus(layout.RunningVersion, layout.RunningSlot, entries, next, failed?.Version, reason);
    }

    /// <summary>
    /// Makes the other slot's version the one the next boot starts (docs/updates.md,
    /// "Rollback"). An older one: the running entry is marked bad so it sorts last (kept,
    /// so it can be booted by hand or rolled forward to). A newer one (returning to the
    /// version a rollback left): its entry gets fresh tries and is judged again.
    /// </summary>
    public string Rollback()
    {
        InstalledEntry running = RunningEntry();
        InstalledEntry other = BootEntryFiles.List(espRoot).FirstOrDefault(e => e.Slot == layout.InactiveSlot)
            ?? throw new IOException($"slot {layout.InactiveSlot} has no boot entry: there is no other version to roll back to");
        if (!Directory.Exists(BootEntryFiles.BootDirectory(espRoot, other.Version)))
        {
            throw new IOException($"version {other.Version}'s kernel and initramfs are missing from the ESP: it cannot be booted");
        }
        if (other.Name.IsBad) BootEntryFiles.Retry(espRoot, other.Name);
        bool older = SemanticVersion.TryParse(other.Version, out var o) && SemanticVersion.TryParse(running.Version, out var r) && o < r;
        if (older && !running.Name.IsBad)
        {
            BootEntryFiles.MarkBad(espRoot, running.Name);
            new BootRecord { Version = running.Version, Verdict = "rolled back by the operator", Time = DateTimeOffset.UtcNow, Entry = running.Name.FileName }
                .Save(bootRecords);
        }
        return $"the next boot starts {other.Version} (slot {layout.InactiveSlot}); {running.Version} stays installed{(older ? ", marked bad" : "")}";
    }
}
