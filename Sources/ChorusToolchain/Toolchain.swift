/// The Swift toolchain this module was compiled with.
///
/// Swift has no ABI stability on Linux and `libswiftCore.so` carries no version
/// in its soname, so a Swift plugin must be built by the host's exact toolchain.
/// Both the host and the Swift connector SDK compile this file; the SDK puts the
/// value in the plugin descriptor (`swift_toolchain`) and the host refuses a
/// plugin whose value differs from its own.
public enum SwiftToolchain {
    public static let identifier: String = {
        #if compiler(>=6.5)
        return "swift-6.5-or-later"
        #elseif compiler(>=6.4)
        return "swift-6.4"
        #elseif compiler(>=6.3.3)
        return "swift-6.3.3"
        #elseif compiler(>=6.3.2)
        return "swift-6.3.2"
        #elseif compiler(>=6.3.1)
        return "swift-6.3.1"
        #elseif compiler(>=6.3)
        return "swift-6.3.0"
        #elseif compiler(>=6.2)
        return "swift-6.2"
        #elseif compiler(>=6.1)
        return "swift-6.1"
        #else
        return "swift-6.0"
        #endif
    }()
}
