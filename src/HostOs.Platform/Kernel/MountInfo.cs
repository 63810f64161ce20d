using System.Text;

namespace HostOs.Platform.Kernel;

/// <summary>
/// One line of /proc/PID/mountinfo (proc(5)):
/// <code>
/// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
/// (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
/// </code>
/// Octal escapes (<c>\040</c> for a space) are decoded in paths.
/// </summary>
public sealed record MountInfo(int Id, int ParentId, string Root, string MountPoint, string Options, string FsType, string Source)
{
    public static bool TryParse(string line, out MountInfo? info)
    {
        info = null;
        string[] f = line.Split(' ');
        int dash = Array.IndexOf(f, "-");
        if (f.Length < 10 || dash < 6 || dash + 2 >= f.Length) return false;
        if (!int.TryParse(f[0], out int id) || !int.TryParse(f[1], out int parent)) return false;
        info = new MountInfo(id, parent, Unescape(f[3]), Unescape(f[4]), f[5], f[dash + 1], Unescape(f[dash + 2]));
        return true;
    }

    public static List<MountInfo> ParseAll(string text)
    {
        var list = new List<MountInfo>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (TryParse(line, out MountInfo? m)) list.Add(m!);
        }
        return list;
    }

    /// <summary>Whether something is mounted at <paramref name="path"/> (escapes decoded).</summary>
    public static bool IsMountPoint(string path, string mountinfo = "/proc/self/mountinfo") =>
        ParseAll(File.ReadAllText(mountinfo)).Any(m => m.MountPoint == path);

    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 3 < s.Length &&
                s.AsSpan(i + 1, 3).IndexOfAnyExceptInRange('0', '7') < 0)
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }
}
