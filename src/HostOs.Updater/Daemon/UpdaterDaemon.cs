using HostOs.Bus;
using HostOs.Logging;
using HostOs.Platform.Config;
using HostOs.Updater.Machine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;

namespace HostOs.Updater.Daemon;

/// <summary>
/// <c>hostos-updater daemon</c>: Microsoft.Extensions.Hosting with its systemd integration
/// (READY=1 through the init's NOTIFY_SOCKET once started), Serilog into the init's journal
/// (our journald-protocol sink), <c>org.hostos.Updater1</c> on the system bus, and the
/// policy's timer: look for a release every <c>checkIntervalMinutes</c> and install it, then
/// reboot when the policy says so.
/// </summary>
internal static class DaemonHost
{
    public static int Run()
    {
        Log.Logger = new LoggerConfiguration()
            .MinimumLevel.Information()
            .WriteTo.Journald("hostos-updater")
            .CreateLogger();
        try
        {
            HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
            builder.Services.AddSystemd();
            builder.Logging.AddSerilog(Log.Logger, dispose: false);
            builder.Services.AddSingleton(sp => new UpdateEngine(sp.GetRequiredService<ILogger<UpdateEngine>>()));
            builder.Services.AddHostedService<UpdaterDaemon>();
            builder.Build().Run();
            return 0;
        }
        finally
        {
            Log.CloseAndFlush();
        }
    }
}

internal sealed partial class UpdaterDaemon(UpdateEngine engine, ILogger<UpdaterDaemon> log) : BackgroundService
{
    private static readonly TimeSpan Tick = TimeSpan.FromSeconds(15);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var api = new UpdaterApi(engine);
        api.AttachSignals();
        Task bus = BusService.KeepOnBusAsync(api, UpdaterApi.BusName, m => LogInfo(log, m), m => LogWarn(log, m), api.Connected, cancel: stoppingToken);
        // The first look comes as soon as the running version is blessed (never an install
        // while it is on trial), then every checkIntervalMinutes.
        DateTimeOffset next = DateTimeOffset.UtcNow;
        try
        {
            SlotStatus slots = MachineSession.Run(u => u.Status(), null, TimeSpan.FromMinutes(1));
            Console.WriteLine($"running {slots.RunningVersion} (slot {slots.RunningSlot})" +
                              (slots.RolledBackFrom is { } from ? $"; rolled back from {from}: {slots.RollbackReason}" : ""));
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            LogProblem(log, e.Message);
            Console.WriteLine($"cannot read the slots and boot entries: {e.Message}");
        }
        string? lastProblem = null;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(Tick, stoppingToken).ConfigureAwait(false);
                DateTimeOffset now = DateTimeOffset.UtcNow;
                try
                {
                    UpdateSettings? settings = MachineSession.Settings();
                    await engine.RebootIfDueAsync(now).ConfigureAwait(false);
                    if (settings is { CheckIntervalMinutes: > 0 } && now >= next && !engine.Busy && engine.Installed is null
                        && !MachineSession.Run(u => u.RunningOnTrial, null, TimeSpan.FromMinutes(1)))
                    {
                        engine.StartInstall(automatic: true);
                        next = now + TimeSpan.FromMinutes(settings.CheckIntervalMinutes);
                    }
                    lastProblem = null;
                }
                catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException
                                              or Tmds.DBus.Protocol.DBusExceptionBase or UpdaterBusyException)
                {
                    if (e.Message != lastProblem) LogProblem(log, e.Message);
                    lastProblem = e.Message;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        await engine.WaitAsync().ConfigureAwait(false);
        await bus.ConfigureAwait(false);
    }

    [LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Information, Message = "{Message}")]
    private static partial void LogInfo(Microsoft.Extensions.Logging.ILogger log, string message);

    [LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Warning, Message = "{Message}")]
    private static partial void LogWarn(Microsoft.Extensions.Logging.ILogger log, string message);

    [LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Warning, Message = "update policy: {Problem}")]
    private static partial void LogProblem(Microsoft.Extensions.Logging.ILogger log, string problem);
}
