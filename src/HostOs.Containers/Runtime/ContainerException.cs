namespace HostOs.Containers.Runtime;

/// <summary>A container that could not be created or started; names the container and the step.</summary>
public class ContainerException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>No container of that id under the state root (runc: "container does not exist").</summary>
public sealed class ContainerNotFoundException(string id) : ContainerException($"container \"{id}\" does not exist");
