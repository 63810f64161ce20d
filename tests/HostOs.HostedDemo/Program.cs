using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// The worker template as anyone writes it, plus the one line systemd services add.
HostApplicationBuilder builder = Host.CreateApplicationBuilder(args);
builder.Services.AddSystemd();
builder.Services.AddHostedService<Worker>();
await builder.Build().RunAsync();

internal sealed class Worker(ILogger<Worker> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        log.LogInformation("hosted-demo working, systemd service: {IsSystemd}", Microsoft.Extensions.Hosting.Systemd.SystemdHelpers.IsSystemdService());
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken);
        }
        catch (OperationCanceledException)
        {
            log.LogInformation("hosted-demo stopping");
        }
    }
}
