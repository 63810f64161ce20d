using System.Globalization;

namespace HostOs.Runc;

/// <summary>A command line that does not parse; the message names the flag or argument.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// runc's command-line grammar (urfave/cli, as runc uses it): global flags, the command,
/// its flags, then its arguments. Flags are <c>--name value</c>, <c>--name=value</c>, the
/// same with one dash, or a one-letter alias; booleans take no value or <c>=true|false</c>;
/// <c>--</c> ends the flags; for exec everything after the id is the command, verbatim.
/// Hand-written rather than System.CommandLine: this grammar is runc's, not ours, and the
/// runtime starts once per container (docs/containers.md).
/// </summary>
public sealed class Arguments
{
    public string Command { get; private set; } = "";
    public Dictionary<string, List<string>> Flags { get; } = [];
    public List<string> Positional { get; } = [];

    /// <summary>Flags each command takes: name → takes a value; aliases map to names.</summary>
    private static readonly Dictionary<string, bool> GlobalFlags = new()
    {
        ["root"] = true, ["log"] = true, ["log-format"] = true, ["debug"] = false, ["systemd-cgroup"] = false,
        ["rootless"] = true, ["criu"] = true, ["help"] = false, ["version"] = false,
    };

    private static readonly Dictionary<string, Dictionary<string, bool>> CommandFlags = new()
    {
        ["create"] = new() { ["bundle"] = true, ["pid-file"] = true, ["console-socket"] = true, ["no-pivot"] = false, ["no-new-keyring"] = false, ["preserve-fds"] = true, ["pidfd-socket"] = true },
        ["run"] = new() { ["bundle"] = true, ["pid-file"] = true, ["console-socket"] = true, ["no-pivot"] = false, ["no-new-keyring"] = false, ["preserve-fds"] = true, ["detach"] = false, ["keep"] = false, ["no-subreaper"] = false, ["pidfd-socket"] = true },
        ["start"] = [],
        ["state"] = [],
        ["kill"] = new() { ["all"] = false },
        ["delete"] = new() { ["force"] = false },
        ["list"] = new() { ["format"] = true, ["quiet"] = false },
        ["exec"] = new() { ["process"] = true, ["env"] = true, ["cwd"] = true, ["user"] = true, ["additional-gids"] = true, ["tty"] = false, ["detach"] = false, ["pid-file"] = true, ["cap"] = true, ["no-new-privs"] = false, ["console-socket"] = true, ["preserve-fds"] = true, ["ignore-paused"] = false, ["process-label"] = true, ["apparmor"] = true, ["cgroup"] = true, ["pidfd-socket"] = true },
        ["pause"] = [],
        ["resume"] = [],
        ["ps"] = new() { ["format"] = true },
        ["spec"] = new() { ["bundle"] = true, ["rootless"] = false },
        ["version"] = [],
        ["help"] = [],
    };

    private static readonly Dictionary<string, string> Aliases = new()
    {
        ["b"] = "bundle", ["d"] = "detach", ["a"] = "all", ["q"] = "quiet", ["p"] = "process", ["e"] = "env",
        ["u"] = "user", ["g"] = "additional-gids", ["t"] = "tty", ["c"] = "cap", ["h"] = "help", ["v"] = "version",
    };

    /// <summary>-f is --force for delete and --format for list.</summary>
    private static string Alias(string command, string name) => name switch
    {
        "f" => command is "list" or "ps" ? "format" : "force",
        _ => Aliases.GetValueOrDefault(name, name),
    };

    public static Arguments Parse(string[] args)
    {
        var a = new Arguments();
        int i = 0;
        i = a.ParseFlags(args, i, "", GlobalFlags);
        if (i >= args.Length)
        {
            a.Command = a.Has("version") ? "version" : "help";
            return a;
        }
        a.Command = args[i++];
        if (!CommandFlags.TryGetValue(a.Command, out var flags))
        {
            throw new UsageException($"no such command '{a.Command}' (commands: {string.Join(", ", CommandFlags.Keys)})");
        }
        while (i < args.Length)
        {
            i = a.ParseFlags(args, i, a.Command, flags);
            if (i >= args.Length) break;
            a.Positional.Add(args[i++]);
            if (a.Command == "exec" && a.Positional.Count == 1)
            {
                // The id, then the command and its own flags, untouched.
                if (i < args.Length && args[i] == "--") i++;
                a.Positional.AddRange(args[i..]);
                break;
            }
        }
        return a;
    }

    /// <summary>Consumes flags from <paramref name="i"/>; returns the index of the first non-flag.</summary>
    private int ParseFlags(string[] args, int i, string command, Dictionary<string, bool> known)
    {
        while (i < args.Length)
        {
            string arg = args[i];
            if (arg == "--") return i + 1 < args.Length ? PositionalRest(args, i + 1) : args.Length;
            if (arg.Length < 2 || arg[0] != '-') return i;
            string body = arg.StartsWith("--", StringComparison.Ordinal) ? arg[2..] : arg[1..];
            string? value = null;
            int eq = body.IndexOf('=');
            if (eq >= 0) (body, value) = (body[..eq], body[(eq + 1)..]);
            string name = Alias(command, body);
            if (!known.TryGetValue(name, out bool takesValue))
            {
                string where = command == "" ? "" : $" for '{command}'";
                throw new UsageException($"flag provided but not defined{where}: {arg}");
            }
            if (takesValue && value is null)
            {
                if (i + 1 >= args.Length) throw new UsageException($"flag needs an argument: {arg}");
                value = args[++i];
            }
            else if (!takesValue)
            {
                value = value switch
                {
                    null or "true" or "1" => "true",
                    "false" or "0" => "false",
                    _ => throw new UsageException($"flag {arg}: '{value}' is not a boolean"),
                };
            }
            if (!Flags.TryGetValue(name, out var list)) Flags[name] = list = [];
            list.Add(value!);
            i++;
        }
        return i;
    }

    /// <summary>After "--" everything is positional.</summary>
    private int PositionalRest(string[] args, int i)
    {
        Positional.AddRange(args[i..]);
        return args.Length;
    }

    public bool Has(string flag) => Flags.TryGetValue(flag, out var v) && v[^1] == "true";
    public string? Value(string flag) => Flags.TryGetValue(flag, out var v) ? v[^1] : null;
    public List<string> Values(string flag) => Flags.GetValueOrDefault(flag) ?? [];

    /// <summary>Exactly <paramref name="count"/> positional arguments, named in the error.</summary>
    public void Expect(int min, int max, string usage)
    {
        if (Positional.Count < min || Positional.Count > max)
        {
            throw new UsageException($"'{Command}' takes {usage}; got {(Positional.Count == 0 ? "none" : string.Join(' ', Positional))}");
        }
    }
}

/// <summary>Signal names and numbers as kill(1) and runc accept them: 9, KILL, SIGKILL.</summary>
public static class Signals
{
    private static readonly string[] Names =
    [
        "", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
        "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
        "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];

    public static int Parse(string text)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
        {
            if (n is >= 1 and <= 64) return n;
        }
        else
        {
            string name = text.ToUpperInvariant();
            if (name.StartsWith("SIG", StringComparison.Ordinal)) name = name[3..];
            int index = Array.IndexOf(Names, name);
            if (index > 0) return index;
            if (name == "IOT") return 6;
            if (name == "POLL") return 29;
        }
        throw new UsageException($"unknown signal '{text}' (a number 1-64, or a name such as TERM or SIGKILL)");
    }
}
