import ChorusConnectorSDK
import ChorusJSON

/// A media file fetched through the Graph media endpoint.
public struct GraphMedia: Sendable {
    /// The media id.
    public var id: String
    /// `mime_type` from the media object (or the download's Content-Type).
    public var mimeType: String?
    /// `sha256` from the media object.
    public var sha256: String?
    /// The file's bytes.
    public var bytes: [UInt8]
}

/// Downloads inbound media the Graph way: `GET {base}/{version}/{media-id}`
/// with the access token gives a short-lived `url` (plus `mime_type`,
/// `file_size`, `sha256`); `GET url` with the same token gives the bytes.
/// Files larger than `maxBytes` are refused — before the download when the
/// media object announces its size, and after it otherwise.
public final class GraphMediaDownloader {
    public let graph: GraphClient
    /// The largest file accepted.
    public var maxBytes: Int

    public init(graph: GraphClient, maxBytes: Int = 16 << 20) {
        self.graph = graph
        self.maxBytes = maxBytes
    }

    /// Fetches media `id`; `completion` runs once on the loop thread.
    public func download(id: String, completion: @escaping (Result<GraphMedia, GraphFailure>) -> Void) {
        let limit = maxBytes
        graph.get(percentEncodePathSegment(id)) { [graph] result in
            switch result {
            case .failure(let f): completion(.failure(f))
            case .success(let meta):
                guard let url = meta["url"]?.stringValue, !url.isEmpty else {
                    completion(.failure(GraphFailure(disposition: .permanent, code: "bad_media_object", message: "media object has no url", httpStatus: 200)))
                    return
                }
                if let size = meta["file_size"]?.intValue ?? meta["file_size"]?.stringValue.flatMap({ Int64($0) }), size > Int64(limit) {
                    completion(.failure(GraphFailure(disposition: .permanent, code: "media_too_large",
                                                     message: "media is \(size) bytes, over the limit of \(limit)", httpStatus: 200)))
                    return
                }
                graph.host.request(method: "GET", url: url, headers: [graph.authorizationHeader], timeoutMs: max(graph.timeoutMs, 60_000)) { r in
                    guard (200..<300).contains(r.status) else {
                        completion(.failure(GraphRetryPolicy.classify(status: r.status, transportError: r.error, headers: r.headers, body: r.body)))
                        return
                    }
                    guard r.body.count <= limit else {
                        completion(.failure(GraphFailure(disposition: .permanent, code: "media_too_large",
                                                         message: "media is \(r.body.count) bytes, over the limit of \(limit)", httpStatus: r.status)))
                        return
                    }
                    completion(.success(GraphMedia(id: id, mimeType: meta["mime_type"]?.stringValue ?? r.header("content-type"),
                                                   sha256: meta["sha256"]?.stringValue, bytes: r.body)))
                }
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters (for ids placed in a URL path).
public func percentEncodePathSegment(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
            out.unicodeScalars.append(UnicodeScalar(b))
        default:
            let h = Array("0123456789ABCDEF")
            out.append("%"); out.append(h[Int(b >> 4)]); out.append(h[Int(b & 15)])
        }
    }
    return out
}
