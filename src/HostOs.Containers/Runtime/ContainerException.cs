namespace HostOs.Containers.Runtime;

/// <summary>A container that could not be created or started; names the container and the step.</summary>
public sealed class ContainerException(string message, Exception? inner = null) : Exception(message, inner);
