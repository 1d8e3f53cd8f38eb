import ChorusConnectorSDK
import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Attachments of received mail, stored content-addressed (`<sha256>` file names) under the
/// instance's state directory before the event that refers to them is emitted, and served at
/// `GET /webhooks/<instance>/media/<sha256>`.
///
/// Writes and reads are blocking file I/O: call them off the loop thread.
struct MediaFiles: Sendable {
    let directory: String

    /// The file of digest `sha256`.
    func path(_ sha256: String) -> String { directory + "/" + sha256 }

    /// Lower-case hex SHA-256 of `bytes`.
    static func sha256Hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBufferPointer { b in cossl_sha256(b.baseAddress, b.count, &digest) }
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for d in digest { out.append(hex[Int(d >> 4)]); out.append(hex[Int(d & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes `bytes` durably (temporary file, fsync, rename, fsync of the directory) and returns
    /// its digest. An existing file of the same digest is kept. Throws with the reason when the
    /// disk refuses (full, read-only): the caller must not acknowledge the mail then.
    func store(_ bytes: [UInt8]) throws -> String {
        let digest = MediaFiles.sha256Hex(bytes)
        let file = path(digest)
        if access(file, F_OK) == 0 { return digest }
        var partial = ""
        for comp in directory.split(separator: "/") {
            partial += "/" + comp
            if mkdir(partial, 0o750) != 0 && errno != EEXIST {
                throw ConnectorError("cannot create \(partial): \(String(cString: strerror(errno)))")
            }
        }
        let tmp = file + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ConnectorError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, bytes.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let why = String(cString: strerror(errno))
                close(fd); unlink(tmp)
                throw ConnectorError("cannot write \(tmp): \(why)")
            }
            off += n
        }
        if fsync(fd) != 0 {
            let why = String(cString: strerror(errno))
            close(fd); unlink(tmp)
            throw ConnectorError("cannot sync \(tmp): \(why)")
        }
        close(fd)
        guard rename(tmp, file) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw ConnectorError("cannot rename \(tmp): \(why)")
        }
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
        return digest
    }

    /// The stored file, nil when there is none (or `sha256` is not a digest).
    func read(_ sha256: String) -> [UInt8]? {
        guard sha256.utf8.count == 64, sha256.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        let fd = open(path(sha256), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }
}
