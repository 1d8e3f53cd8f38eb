// Support.swift — small file-system helpers of the conformance kit (no Foundation): temporary state
// directories, recursive removal, reading a file, and locating the build products directory.

#if canImport(Glibc)
import Glibc
#endif

/// Errors of the conformance kit's file helpers.
public struct ConformanceFileError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The path involved.
    public let path: String
    /// What went wrong, including the system's reason.
    public let reason: String

    /// `"<path>: <reason>"`.
    public var description: String { "\(path): \(reason)" }
}

enum FileSupport {
    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// Creates a fresh private directory under $TMPDIR (or /tmp).
    static func makeTemporaryDirectory(prefix: String) throws(ConformanceFileError) -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        let made: String? = template.withUnsafeMutableBufferPointer { buffer in
            guard let p = mkdtemp(buffer.baseAddress!) else { return nil }
            return String(cString: p)
        }
        guard let made else {
            throw ConformanceFileError(path: "\(base)/\(prefix)-XXXXXX", reason: "cannot create a temporary directory: \(errnoText())")
        }
        return made
    }

    /// Removes `path` and everything below it; missing paths are fine. Symbolic links are removed, not followed.
    static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            if let dir = opendir(path) {
                var names: [String] = []
                while let entry = readdir(dir) {
                    let name = withUnsafePointer(to: entry.pointee.d_name) {
                        $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                    }
                    if name != "." && name != ".." { names.append(name) }
                }
                closedir(dir)
                for name in names { removeTree(path + "/" + name) }
            }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Reads a whole file (at most `limit` bytes).
    static func readFile(_ path: String, limit: Int = 16 << 20) throws(ConformanceFileError) -> [UInt8] {
        guard let f = fopen(path, "rb") else { throw ConformanceFileError(path: path, reason: "cannot open: \(errnoText())") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if bytes.count > limit { throw ConformanceFileError(path: path, reason: "larger than \(limit) bytes") }
            if n < chunk.count {
                if ferror(f) != 0 { throw ConformanceFileError(path: path, reason: "read error: \(errnoText())") }
                break
            }
        }
        return bytes
    }

    /// The absolute path of the running executable (`/proc/self/exe`).
    static func executablePath() -> String? {
        guard let resolved = realpath("/proc/self/exe", nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isReadableFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, R_OK) == 0
    }
}
