// The smallest system module the NativeAOT compiler accepts, for a program that runs
// without the .NET runtime: no GC, no exceptions, no type checks, no threads. hostos-stage
// (Stage.cs) is written against it: value types, pointers, static fields and libc calls
// only. Nothing here is ever called; the compiler looks these types and members up by name
// (docs/containers.md, "The native stage").
#pragma warning disable CS0169, CS0649, CA1823

namespace System
{
    public class Object { private IntPtr _methodTable; }
    public struct Void { }
    public struct Boolean { }
    public struct Char { }
    public struct SByte { }
    public struct Byte { }
    public struct Int16 { }
    public struct UInt16 { }
    public struct Int32 { }
    public struct UInt32 { }
    public struct Int64 { }
    public struct UInt64 { }
    public unsafe struct IntPtr { private void* _value; }
    public unsafe struct UIntPtr { private void* _value; }
    public struct Single { }
    public struct Double { }
    public abstract class ValueType { }
    public abstract class Enum : ValueType { }
    public struct Nullable<T> where T : struct { }
    public sealed class String { public readonly int Length; private char _firstChar; }
    public abstract class Array { }
    public abstract class Delegate { }
    public abstract class MulticastDelegate : Delegate { }
    public abstract class Type { }
    // Looked up by the JIT when it folds a null check on a string literal.
    internal sealed class RuntimeType : Type { }
    public struct RuntimeTypeHandle { }
    public struct RuntimeMethodHandle { }
    public struct RuntimeFieldHandle { }
    public class Attribute { }
    public enum AttributeTargets { All = 0x7fff }
    public sealed class AttributeUsageAttribute : Attribute
    {
        public AttributeUsageAttribute(AttributeTargets validOn) { }
        public bool AllowMultiple { get; set; }
        public bool Inherited { get; set; }
    }
    public sealed class ParamArrayAttribute : Attribute { }

    // Helpers the compiler resolves by name whether or not the program needs them. Stage.cs
    // uses no struct copies or fills that would call them: should one ever, the process
    // aborts rather than silently copying nothing.
    public static class Buffer
    {
        internal static void BulkMoveWithWriteBarrier(ref byte d, ref byte s, nuint n) => Fatal.Abort();
        internal static void Memmove(ref byte d, ref byte s, nuint n) => Fatal.Abort();
    }
    internal static class SpanHelpers
    {
        internal static void Memmove(ref byte d, ref byte s, nuint n) => Fatal.Abort();
        internal static void MemCopy(ref byte d, ref byte s, nuint n) => Fatal.Abort();
        internal static void ClearWithoutReferences(ref byte d, nuint n) => Fatal.Abort();
        internal static void Fill(ref byte d, nuint n, byte v) => Fatal.Abort();
    }
    internal static class Fatal
    {
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "abort")] internal static extern void Abort();
    }
}

namespace System.Runtime
{
    internal sealed class RuntimeExportAttribute : Attribute { public RuntimeExportAttribute(string entry) { } }

    internal static class TypeCast
    {
        internal static void CheckCastAny() { }
        internal static void CheckCastInterface() { }
        internal static void CheckCastClass() { }
        internal static void CheckCastClassSpecial() { }
        internal static void IsInstanceOfAny() { }
        internal static void IsInstanceOfInterface() { }
        internal static void IsInstanceOfClass() { }
        internal static void IsInstanceOfException() { }
    }
}

namespace System.Runtime.CompilerServices
{
    public static class RuntimeHelpers { public static unsafe int OffsetToStringData => sizeof(IntPtr) + sizeof(int); }
    public static class IsVolatile { }
    public sealed class SkipLocalsInitAttribute : Attribute { }
}

namespace System.Runtime.InteropServices
{
    public sealed class UnmanagedCallersOnlyAttribute : Attribute { public string EntryPoint; }
    public sealed class DllImportAttribute : Attribute { public DllImportAttribute(string dllName) { } public string EntryPoint; }
    internal static class IDynamicInterfaceCastable { internal static void GetDynamicInterfaceImplementation() { } }
}

namespace Internal.Runtime.CompilerHelpers
{
    internal static class ThrowHelpers { internal static void ThrowFeatureBodyRemoved() { } }

    /// <summary>The runtime's transitions around native calls: nothing to do without a GC.</summary>
    internal static class StartupCodeHelpers
    {
        [System.Runtime.RuntimeExport("RhpReversePInvoke")] private static void RhpReversePInvoke(System.IntPtr frame) { }
        [System.Runtime.RuntimeExport("RhpReversePInvokeReturn")] private static void RhpReversePInvokeReturn(System.IntPtr frame) { }
        [System.Runtime.RuntimeExport("RhpPInvoke")] private static void RhpPInvoke(System.IntPtr frame) { }
        [System.Runtime.RuntimeExport("RhpPInvokeReturn")] private static void RhpPInvokeReturn(System.IntPtr frame) { }
        [System.Runtime.RuntimeExport("RhpFallbackFailFast")] private static void RhpFallbackFailFast() => System.Fatal.Abort();
    }
}
