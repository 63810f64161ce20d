using System.Globalization;

namespace HostOs.Platform.Boot;

/// <summary>
/// A Boot Loader Specification entry file name with the optional boot-counting suffix
/// (https://uapi-group.org/specifications/specs/boot_loader_specification/ "Boot counting"):
/// <c>ID[+LEFT[-DONE]].conf</c>. systemd-boot decrements LEFT and increments DONE before
/// each boot of a counted entry; an entry with LEFT = 0 is "bad" and sorted last; an entry
/// without a counter has been blessed ("good"). A pure value: transitions return new names.
/// </summary>
public readonly record struct BootEntryName(string Id, int? TriesLeft, int? TriesDone)
{
    public bool IsCounted => TriesLeft is not null;
    public bool IsBad => TriesLeft == 0;

    public string FileName => TriesLeft switch
    {
        null => $"{Id}.conf",
        int left when TriesDone is int done => $"{Id}+{left}-{done}.conf",
        int left => $"{Id}+{left}.conf",
    };

    /// <summary>The name after the boot was judged good: the counter is dropped.</summary>
    public BootEntryName Blessed() => this with { TriesLeft = null, TriesDone = null };

    public static BootEntryName New(string id, int tries) => new(id, tries, null);

    public static bool TryParse(string fileName, out BootEntryName name)
    {
        name = default;
        if (!fileName.EndsWith(".conf", StringComparison.Ordinal)) return false;
        string stem = fileName[..^5];
        int plus = stem.LastIndexOf('+');
        if (plus < 0)
        {
            if (stem.Length == 0) return false;
            name = new BootEntryName(stem, null, null);
            return true;
        }
        string id = stem[..plus];
        string counter = stem[(plus + 1)..];
        int dash = counter.IndexOf('-');
        string left = dash < 0 ? counter : counter[..dash];
        if (id.Length == 0 || !IsDigits(left)) return false;
        int? done = null;
        if (dash >= 0)
        {
            string d = counter[(dash + 1)..];
            if (!IsDigits(d)) return false;
            done = int.Parse(d, CultureInfo.InvariantCulture);
        }
        name = new BootEntryName(id, int.Parse(left, CultureInfo.InvariantCulture), done);
        return true;
    }

    private static bool IsDigits(string s) => s.Length is > 0 and < 6 && s.All(char.IsAsciiDigit);
}
