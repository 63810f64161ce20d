using System.Globalization;

namespace HostOs.Containers.Cli;

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
    private readonly List<(string Name, string Value)> _flags = [];
    public List<string> Positional { get; } = [];

    // Flags each command takes, "name=" when it takes a value. Plain arrays and switches,
    // not dictionaries: under TCG the first use of every generic collection costs (the CLI
    // starts once per container; docs/containers.md, "Start latency").
    private static readonly string[] GlobalFlags =
        ["root=", "log=", "log-format=", "debug", "systemd-cgroup", "rootless=", "criu=", "help", "version"];

    private static string[]? CommandFlags(string command) => command switch
    {
        "create" => ["bundle=", "pid-file=", "console-socket=", "no-pivot", "no-new-keyring", "preserve-fds=", "pidfd-socket="],
        "run" => ["bundle=", "pid-file=", "console-socket=", "no-pivot", "no-new-keyring", "preserve-fds=", "detach", "keep", "no-subreaper", "pidfd-socket="],
        "start" or "state" or "pause" or "resume" or "version" or "help" => [],
        "kill" => ["all"],
        "delete" => ["force"],
        "list" => ["format=", "quiet"],
        "exec" => ["process=", "env=", "cwd=", "user=", "additional-gids=", "tty", "detach", "pid-file=", "cap=", "no-new-privs", "console-socket=",
                   "preserve-fds=", "ignore-paused", "process-label=", "apparmor=", "cgroup=", "pidfd-socket="],
        "ps" => ["format="],
        "spec" => ["bundle=", "rootless"],
        _ => null,
    };

    private const string Commands = "create, run, start, state, kill, delete, list, exec, pause, resume, ps, spec, version, help";

    /// <summary>One-letter aliases; -f is --force for delete and --format for list and ps.</summary>
    private static string Alias(string command, string name) => name switch
    {
        "b" => "bundle", "d" => "detach", "a" => "all", "q" => "quiet", "p" => "process", "e" => "env",
        "u" => "user", "g" => "additional-gids", "t" => "tty", "c" => "cap", "h" => "help", "v" => "version",
        "f" => command is "list" or "ps" ? "format" : "force",
        _ => name,
    };

    /// <summary>null: not a flag of this command; else whether it takes a value.</summary>
    private static bool? TakesValue(string[] flags, string name)
    {
        foreach (string f in flags)
        {
            if (f == name) return false;
            if (f.Length == name.Length + 1 && f[^1] == '=' && f.StartsWith(name, StringComparison.Ordinal)) return true;
        }
        return null;
    }

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
        string[] flags = CommandFlags(a.Command) ?? throw new UsageException($"no such command '{a.Command}' (commands: {Commands})");
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
    private int ParseFlags(string[] args, int i, string command, string[] known)
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
            if (TakesValue(known, name) is not bool takesValue)
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
            _flags.Add((name, value!));
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

    public bool Has(string flag) => Value(flag) == "true";

    /// <summary>The flag's last value (runc: the last one given wins), or null.</summary>
    public string? Value(string flag)
    {
        for (int i = _flags.Count - 1; i >= 0; i--)
        {
            if (_flags[i].Name == flag) return _flags[i].Value;
        }
        return null;
    }

    public List<string> Values(string flag)
    {
        // A loop, not Where/Select: LINQ's Select over value tuples makes NativeAOT's type
        // loader resolve a generic virtual method at run time (docs/containers.md "Start latency").
        var values = new List<string>();
        foreach (var (name, value) in _flags) if (name == flag) values.Add(value);
        return values;
    }

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
