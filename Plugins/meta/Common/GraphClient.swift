import ChorusConnectorSDK
import ChorusJSON

/// The result of a Graph API call: the parsed JSON body, or a classified failure.
public enum GraphResult: Sendable {
    case success(JSONValue)
    case failure(GraphFailure)
}

/// A Graph API client over `ConnectorHost.request`: versioned URLs
/// (`{base}/{version}/{path}`), the bearer token, JSON bodies and error
/// classification (`GraphRetryPolicy`). Loop-thread only, like the host.
///
/// The access token is sent only in the `Authorization` header and never
/// appears in a `GraphFailure` message or a log line.
public final class GraphClient {
    public let host: ConnectorHost
    /// The API origin, `https://graph.facebook.com` unless overridden (tests point it at a local server).
    public private(set) var baseURL: String
    /// The Graph API version, `v21.0`.
    public private(set) var version: String
    private var accessToken: String
    /// Per-request timeout.
    public var timeoutMs: UInt32

    /// The default API origin.
    public static let defaultBaseURL = "https://graph.facebook.com"
    /// The default API version.
    public static let defaultVersion = "v21.0"

    public init(host: ConnectorHost, baseURL: String = GraphClient.defaultBaseURL, version: String = GraphClient.defaultVersion,
                accessToken: String, timeoutMs: UInt32 = 20_000) {
        self.host = host
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.version = version
        self.accessToken = accessToken
        self.timeoutMs = timeoutMs
    }

    /// Replaces the settings (on reload).
    public func update(baseURL: String, version: String, accessToken: String) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.version = version
        self.accessToken = accessToken
    }

    /// `{base}/{version}/{path}`.
    public func url(_ path: String) -> String {
        baseURL + "/" + version + "/" + (path.hasPrefix("/") ? String(path.dropFirst()) : path)
    }

    /// The authorization header, for requests made outside this client (media downloads).
    public var authorizationHeader: (String, String) { ("Authorization", "Bearer " + accessToken) }

    /// POSTs a JSON body to `{base}/{version}/{path}`.
    public func post(_ path: String, json: JSONValue, completion: @escaping (GraphResult) -> Void) {
        post(path, body: JSONWriter.encode(json), contentType: "application/json", completion: completion)
    }

    /// POSTs raw bytes (multipart uploads) to `{base}/{version}/{path}`.
    public func post(_ path: String, body: [UInt8], contentType: String, completion: @escaping (GraphResult) -> Void) {
        host.request(method: "POST", url: url(path), headers: [authorizationHeader, ("Content-Type", contentType)],
                     body: body, timeoutMs: timeoutMs) { r in completion(GraphClient.result(r)) }
    }

    /// GETs `{base}/{version}/{path}`.
    public func get(_ path: String, completion: @escaping (GraphResult) -> Void) {
        host.request(method: "GET", url: url(path), headers: [authorizationHeader], timeoutMs: timeoutMs) { r in
            completion(GraphClient.result(r))
        }
    }

    /// Turns an HTTP result into a `GraphResult`.
    public static func result(_ r: HTTPResult) -> GraphResult {
        if (200..<300).contains(r.status) {
            if r.body.isEmpty { return .success(.object(JSONObject())) }
            do { return .success(try JSONParser.parse(r.body)) } catch {
                return .failure(GraphFailure(disposition: .retryable(afterMs: 0), code: "bad_response",
                                             message: "HTTP \(r.status) with a body that is not JSON: \(error)", httpStatus: r.status))
            }
        }
        return .failure(GraphRetryPolicy.classify(status: r.status, transportError: r.error, headers: r.headers, body: r.body))
    }
}
