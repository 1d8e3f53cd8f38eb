// HTTPClientTests.swift — HTTPClient (libcurl multi_socket on the loop) against this module's own HTTPServer
// on 127.0.0.1: GET, POST, large bodies both ways, timeouts, refused connections, response size limits,
// 200 concurrent requests and closing with requests in flight.

import CLibUV
import ChorusLoop
import Foundation
import XCTest

final class HTTPClientTests: XCTestCase {
    /// An echo-ish server: `/echo` returns the request body, `/big?n` returns n pattern bytes,
    /// `/hang` never answers, everything else returns method and path.
    private func makeServer(_ loop: EventLoop, options: HTTPServer.Options = .init()) throws -> HTTPServer {
        try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, options: options, logger: testLogger) { request, responder in
            switch request.path {
            case "/echo":
                responder.respond(status: 200, headers: [("Content-Type", "application/octet-stream"),
                                                          ("X-Method", request.method)],
                                  body: request.body)
            case "/big":
                responder.respond(status: 200, body: patternBytes(Int(request.query) ?? 0, seed: 3))
            case "/hang":
                break
            case "/missing":
                responder.respond(status: 404, body: Array("nope".utf8))
            default:
                let auth = request.header("authorization") ?? "-"
                responder.respond(status: 200, headers: [("X-Seen-Auth", auth)],
                                  body: Array("\(request.method) \(request.path)?\(request.query)".utf8))
            }
        }
    }

    func testGetAndPost() throws {
        let loop = try EventLoop()
        let server = try makeServer(loop)
        let client = try HTTPClient(loop: loop)
        let base = "http://127.0.0.1:\(server.boundPort)"
        var getResponse: HTTPClientResponse?
        var postResponse: HTTPClientResponse?
        var notFound: HTTPClientResponse?
        var completedSynchronously = true
        client.execute(HTTPClientRequest(url: "\(base)/hello?a=1", headers: [("Authorization", "Bearer t")])) { response in
            getResponse = response
            let body = Array("{\"k\":\"v\"}".utf8)
            client.execute(HTTPClientRequest(method: "POST", url: "\(base)/echo",
                                             headers: [("Content-Type", "application/json")], body: body)) { response in
                postResponse = response
                client.execute(HTTPClientRequest(method: "DELETE", url: "\(base)/missing")) { response in
                    notFound = response
                    XCTAssertEqual(client.inFlight, 0)
                    client.close()
                    server.close()
                }
            }
        }
        completedSynchronously = getResponse != nil
        XCTAssertEqual(client.inFlight, 1)
        runToCompletion(loop)
        XCTAssertFalse(completedSynchronously)

        let get = try XCTUnwrap(getResponse)
        XCTAssertNil(get.error)
        XCTAssertEqual(get.status, 200)
        XCTAssertEqual(String(decoding: get.body, as: UTF8.self), "GET /hello?a=1")
        XCTAssertEqual(get.header("X-Seen-Auth"), "Bearer t")
        XCTAssertEqual(get.header("connection"), "keep-alive")
        XCTAssertTrue(get.headers.allSatisfy { $0.name == $0.name.lowercased() })

        let post = try XCTUnwrap(postResponse)
        XCTAssertNil(post.error)
        XCTAssertEqual(post.status, 200)
        XCTAssertEqual(String(decoding: post.body, as: UTF8.self), "{\"k\":\"v\"}")
        XCTAssertEqual(post.header("x-method"), "POST")

        let missing = try XCTUnwrap(notFound)
        XCTAssertNil(missing.error, "an HTTP error status is not a transport error")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(String(decoding: missing.body, as: UTF8.self), "nope")
    }

    func testLargeBodiesBothWays() throws {
        let loop = try EventLoop()
        var options = HTTPServer.Options()
        options.maxBodyBytes = 2 << 20
        let server = try makeServer(loop, options: options)
        let client = try HTTPClient(loop: loop)
        let base = "http://127.0.0.1:\(server.boundPort)"
        let upload = patternBytes(1 << 20, seed: 11)
        var echoed: HTTPClientResponse?
        var downloaded: HTTPClientResponse?
        var remaining = 2
        func finish() {
            remaining -= 1
            if remaining == 0 {
                client.close()
                server.close()
            }
        }
        client.execute(HTTPClientRequest(method: "PUT", url: "\(base)/echo", body: upload)) { response in
            echoed = response
            finish()
        }
        client.execute(HTTPClientRequest(url: "\(base)/big?\(1 << 20)")) { response in
            downloaded = response
            finish()
        }
        runToCompletion(loop)
        let echo = try XCTUnwrap(echoed)
        XCTAssertNil(echo.error)
        XCTAssertEqual(echo.status, 200)
        XCTAssertEqual(echo.header("x-method"), "PUT")
        XCTAssertEqual(echo.body.count, upload.count)
        XCTAssertTrue(echo.body == upload)
        let big = try XCTUnwrap(downloaded)
        XCTAssertNil(big.error)
        XCTAssertEqual(big.body.count, 1 << 20)
        XCTAssertTrue(big.body == patternBytes(1 << 20, seed: 3))
    }

    func testTimeoutAgainstServerThatNeverAnswers() throws {
        let loop = try EventLoop()
        let server = try makeServer(loop)
        let client = try HTTPClient(loop: loop)
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(server.boundPort)/hang")
        request.timeoutMilliseconds = 300
        var response: HTTPClientResponse?
        let started = Date()
        var elapsed = 0.0
        client.execute(request) { result in
            elapsed = Date().timeIntervalSince(started)
            response = result
            client.close()
            server.close()
        }
        runToCompletion(loop)
        let timedOut = try XCTUnwrap(response)
        XCTAssertEqual(timedOut.status, 0)
        XCTAssertNotNil(timedOut.error)
        XCTAssertTrue(timedOut.error?.lowercased().contains("timed out") ?? false, "error: \(timedOut.error ?? "")")
        XCTAssertGreaterThanOrEqual(elapsed, 0.29)
        XCTAssertLessThan(elapsed, 5)
    }

    func testConnectionRefused() throws {
        let loop = try EventLoop()
        // Find a free port, then stop listening on it.
        let probe = try makeServer(loop)
        let port = probe.boundPort
        probe.close()
        let client = try HTTPClient(loop: loop)
        var response: HTTPClientResponse?
        client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/")) { result in
            response = result
            client.close()
        }
        runToCompletion(loop)
        let refused = try XCTUnwrap(response)
        XCTAssertEqual(refused.status, 0)
        XCTAssertNotNil(refused.error)
        XCTAssertTrue(refused.body.isEmpty)
    }

    func testTwoHundredConcurrentRequestsAllComplete() throws {
        let loop = try EventLoop()
        var options = HTTPServer.Options()
        options.backlog = 1024
        let server = try makeServer(loop, options: options)
        let client = try HTTPClient(loop: loop, maxConnectionsPerHost: 32)
        let base = "http://127.0.0.1:\(server.boundPort)"
        let count = 200
        var results: [Int: HTTPClientResponse] = [:]
        var completionCalls = 0
        for i in 0..<count {
            client.execute(HTTPClientRequest(url: "\(base)/item?\(i)")) { response in
                completionCalls += 1
                results[i] = response
                if results.count == count {
                    client.close()
                    server.close()
                }
            }
        }
        XCTAssertEqual(client.inFlight, count)
        runToCompletion(loop, timeoutMilliseconds: 60_000)
        XCTAssertEqual(completionCalls, count, "each completion runs exactly once")
        XCTAssertEqual(results.count, count)
        for i in 0..<count {
            XCTAssertEqual(results[i]?.status, 200, "request \(i): \(results[i]?.error ?? "")")
            XCTAssertEqual(results[i].map { String(decoding: $0.body, as: UTF8.self) }, "GET /item?\(i)")
        }
    }

    func testResponseLargerThanLimitFails() throws {
        let loop = try EventLoop()
        let server = try makeServer(loop)
        let client = try HTTPClient(loop: loop)
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(server.boundPort)/big?100000")
        request.maxResponseBytes = 10_000
        var response: HTTPClientResponse?
        client.execute(request) { result in
            response = result
            client.close()
            server.close()
        }
        runToCompletion(loop)
        XCTAssertEqual(response?.status, 0)
        XCTAssertEqual(response?.error, "response body exceeds 10000 bytes")
    }

    func testCloseFailsInFlightRequestsAndLaterRequests() throws {
        let loop = try EventLoop()
        let server = try makeServer(loop)
        let client = try HTTPClient(loop: loop)
        var errors: [String?] = []
        for _ in 0..<3 {
            client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(server.boundPort)/hang")) { response in
                errors.append(response.error)
            }
        }
        let timer = LoopTimer(loop: loop)
        timer.start(timeoutMilliseconds: 50) {
            XCTAssertEqual(client.inFlight, 3)
            client.close()
            XCTAssertEqual(errors, ["client closed", "client closed", "client closed"])
            XCTAssertEqual(client.inFlight, 0)
            client.execute(HTTPClientRequest(url: "http://127.0.0.1:1/")) { response in
                errors.append(response.error)
                server.close()
            }
            XCTAssertEqual(errors.count, 3, "completion never runs synchronously")
            timer.close()
        }
        runToCompletion(loop)
        XCTAssertEqual(errors.count, 4)
        XCTAssertEqual(errors.last, "client closed")
    }

    func testRejectsNonHTTPSchemes() throws {
        let loop = try EventLoop()
        let client = try HTTPClient(loop: loop)
        var response: HTTPClientResponse?
        client.execute(HTTPClientRequest(url: "file:///etc/passwd")) { result in
            response = result
            client.close()
        }
        runToCompletion(loop)
        XCTAssertEqual(response?.status, 0)
        XCTAssertNotNil(response?.error)
        XCTAssertEqual(response?.body, [])
    }

    func testLoopShutdownClosesClientWithRequestsInFlight() throws {
        let loop = try EventLoop()
        let server = try makeServer(loop)
        let client = try HTTPClient(loop: loop)
        var error: String?
        client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(server.boundPort)/hang")) { response in
            error = response.error
        }
        let timer = LoopTimer(loop: loop)
        timer.start(timeoutMilliseconds: 50) {
            timer.close()
            loop.stop()
        }
        loop.run()
        XCTAssertEqual(client.inFlight, 1)
        loop.shutdown()
        XCTAssertEqual(error, "client closed")
        XCTAssertEqual(client.inFlight, 0)
        XCTAssertFalse(server.isListening)
    }
}
