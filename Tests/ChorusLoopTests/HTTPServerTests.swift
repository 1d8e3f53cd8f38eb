// HTTPServerTests.swift — HTTPServer driven by a raw blocking socket client on a pool thread (via offload),
// checking exactly what goes over the wire: simple GET, POST body, pipelined requests answered out of order,
// chunked bodies, 413/400/431 rejections, delayed responses, 100-continue, idle timeout and draining.

import CLibUV
import ChorusLoop
import Foundation
import Logging
import XCTest

final class HTTPServerTests: XCTestCase {
    /// Starts a server, runs one raw client exchange on a pool thread, closes the server when the client is
    /// done, and returns the raw bytes the client received.
    private func rawExchange(_ request: [UInt8], options: HTTPServer.Options = .init(),
                             handler: @escaping (HTTPRequest, HTTPResponder) -> Void,
                             file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        let loop = try EventLoop()
        let server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, options: options, logger: testLogger,
                                    handler: handler)
        XCTAssertGreaterThan(server.boundPort, 0, file: file, line: line)
        let port = server.boundPort
        var outcome: Result<[UInt8], ClientError>?
        loop.offload({ rawHTTPExchange(port: port, request) }, completion: { result in
            outcome = result
            server.close()
        })
        runToCompletion(loop)
        return try XCTUnwrap(outcome, file: file, line: line).get()
    }

    /// `rawExchange`, with the responses parsed.
    private func exchange(_ request: [UInt8], options: HTTPServer.Options = .init(),
                          handler: @escaping (HTTPRequest, HTTPResponder) -> Void,
                          file: StaticString = #filePath, line: UInt = #line) throws -> (responses: [ParsedResponse], raw: [UInt8]) {
        let raw = try rawExchange(request, options: options, handler: handler, file: file, line: line)
        return (try parseResponses(raw), raw)
    }

    private func exchange(_ request: String, options: HTTPServer.Options = .init(),
                          handler: @escaping (HTTPRequest, HTTPResponder) -> Void,
                          file: StaticString = #filePath, line: UInt = #line) throws -> (responses: [ParsedResponse], raw: [UInt8]) {
        try exchange(Array(request.utf8), options: options, handler: handler, file: file, line: line)
    }

    func testSimpleGet() throws {
        var seen: HTTPRequest?
        let (responses, _) = try exchange("GET /hello/world?x=1&y=two%20words HTTP/1.1\r\nHost: example\r\nX-Custom:  value  \r\nConnection: close\r\n\r\n") { request, responder in
            seen = request
            responder.respond(status: 200, headers: [("Content-Type", "text/plain")], body: Array("hi".utf8))
            XCTAssertTrue(responder.isAnswered)
        }
        let request = try XCTUnwrap(seen)
        XCTAssertEqual(request.method, "GET")
        XCTAssertEqual(request.path, "/hello/world")
        XCTAssertEqual(request.query, "x=1&y=two%20words")
        XCTAssertEqual(request.queryItems.map { "\($0.name)=\($0.value)" }, ["x=1", "y=two words"])
        XCTAssertEqual(request.header("HOST"), "example")
        XCTAssertEqual(request.header("x-custom"), "value")
        XCTAssertEqual(request.headers.map(\.name), ["host", "x-custom", "connection"])
        XCTAssertTrue(request.remoteAddress.hasPrefix("127.0.0.1:"))
        XCTAssertEqual(request.body, [])

        XCTAssertEqual(responses.count, 1)
        let response = responses[0]
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.bodyText, "hi")
        XCTAssertEqual(response.header("content-length"), "2")
        XCTAssertEqual(response.header("content-type"), "text/plain")
        XCTAssertEqual(response.header("connection"), "close")
        XCTAssertTrue(response.header("date")?.hasSuffix(" GMT") ?? false)
    }

    func testPostWithBody() throws {
        let body = patternBytes(10_000)
        var request = Array("POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        request += body
        var received: [UInt8] = []
        let (responses, _) = try exchange(request) { request, responder in
            XCTAssertEqual(request.method, "POST")
            received = request.body
            responder.respond(status: 202, body: Array("accepted \(request.body.count)".utf8))
        }
        XCTAssertTrue(received == body)
        XCTAssertEqual(responses.map(\.status), [202])
        XCTAssertEqual(responses.first?.bodyText, "accepted 10000")
    }

    func testPipelinedRequestsAnsweredOutOfOrderAreWrittenInOrder() throws {
        var order: [String] = []
        var timers: [LoopTimer] = []
        var loopForTimers: EventLoop?
        let loop = try EventLoop()
        loopForTimers = loop
        let server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, logger: testLogger) { request, responder in
            order.append(request.path)
            if request.path == "/slow" {
                // Answer the first request last.
                let timer = LoopTimer(loop: loopForTimers!)
                timers.append(timer)
                timer.start(timeoutMilliseconds: 50) {
                    order.append("answer /slow")
                    responder.respond(status: 200, body: Array("slow".utf8))
                    timer.close()
                }
            } else {
                order.append("answer \(request.path)")
                responder.respond(status: 200, body: Array(request.path.utf8))
            }
        }
        let port = server.boundPort
        let pipelined = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        var outcome: Result<[UInt8], ClientError>?
        loop.offload({ rawHTTPExchange(port: port, pipelined) }, completion: { result in
            outcome = result
            server.close()
        })
        runToCompletion(loop)
        let responses = try parseResponses(try XCTUnwrap(outcome).get())
        XCTAssertEqual(order, ["/slow", "/fast", "answer /fast", "/last", "answer /last", "answer /slow"])
        XCTAssertEqual(responses.map(\.bodyText), ["slow", "/fast", "/last"])
        XCTAssertEqual(responses.map { $0.header("connection") ?? "" }, ["keep-alive", "keep-alive", "close"])
    }

    func testChunkedRequestBody() throws {
        let request = "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
        var body = ""
        let (responses, _) = try exchange(request) { request, responder in
            body = String(decoding: request.body, as: UTF8.self)
            responder.respond(status: 200, body: request.body)
        }
        XCTAssertEqual(body, "hello world")
        XCTAssertEqual(responses.first?.bodyText, "hello world")
    }

    func testOversizedBodyIsRejectedWith413() throws {
        var options = HTTPServer.Options()
        options.maxBodyBytes = 1000
        var handlerCalls = 0
        // Declared by Content-Length: rejected before the body is read.
        var request = Array("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".utf8)
        request += patternBytes(5000)
        let (responses, _) = try exchange(request, options: options) { _, responder in
            handlerCalls += 1
            responder.respond(status: 200)
        }
        XCTAssertEqual(handlerCalls, 0)
        XCTAssertEqual(responses.map(\.status), [413])
        XCTAssertEqual(responses.first?.header("connection"), "close")

        // Chunked: rejected once the accumulated body passes the limit.
        let chunk = String(repeating: "a", count: 600)
        let chunked = "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "258\r\n\(chunk)\r\n258\r\n\(chunk)\r\n0\r\n\r\n"
        let (chunkedResponses, _) = try exchange(chunked, options: options) { _, responder in
            handlerCalls += 1
            responder.respond(status: 200)
        }
        XCTAssertEqual(handlerCalls, 0)
        XCTAssertEqual(chunkedResponses.map(\.status), [413])
    }

    func testMalformedRequestIsRejectedWith400AfterEarlierResponses() throws {
        var paths: [String] = []
        let request = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nTHIS IS NOT HTTP\r\n\r\n"
        let (responses, _) = try exchange(request) { request, responder in
            paths.append(request.path)
            responder.respond(status: 204)
        }
        XCTAssertEqual(paths, ["/ok"])
        XCTAssertEqual(responses.map(\.status), [204, 400])
        XCTAssertNil(responses.first?.header("content-length"), "no Content-Length on 204")
        XCTAssertEqual(responses.last?.header("connection"), "close")

        let (garbage, _) = try exchange("\u{01}\u{02}garbage\r\n\r\n") { _, responder in responder.respond(status: 200) }
        XCTAssertEqual(garbage.map(\.status), [400])
    }

    func testOversizedHeaderSectionIsRejectedWith431() throws {
        var options = HTTPServer.Options()
        options.maxHeaderBytes = 1024
        let request = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 2000))\r\n\r\n"
        let (responses, _) = try exchange(request, options: options) { _, responder in responder.respond(status: 200) }
        XCTAssertEqual(responses.map(\.status), [431])
    }

    func testDelayedAsynchronousRespond() throws {
        let loop = try EventLoop()
        var handlerReturnedBeforeAnswer = false
        let worker = SerialWorker(name: "commit")
        let poster = loop.poster
        let server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, logger: testLogger) { request, responder in
            let pending = LoopBound(responder)
            let body = request.body
            // Simulate a durable commit on another thread, answering only when it finished.
            worker.submit {
                usleep(30_000)
                poster.post {
                    pending.value.respond(status: 200, body: Array("committed \(body.count)".utf8))
                    pending.value.respond(status: 500)  // second answer is ignored
                }
            }
            handlerReturnedBeforeAnswer = !responder.isAnswered
        }
        let port = server.boundPort
        var outcome: Result<[UInt8], ClientError>?
        loop.offload({ rawHTTPExchange(port: port, "POST /e HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc") },
                     completion: { result in
                         outcome = result
                         server.close()
                     })
        runToCompletion(loop)
        worker.shutdown()
        XCTAssertTrue(handlerReturnedBeforeAnswer)
        let responses = try parseResponses(try XCTUnwrap(outcome).get())
        XCTAssertEqual(responses.map(\.status), [200])
        XCTAssertEqual(responses.first?.bodyText, "committed 3")
    }

    func testKeepAliveServesSequentialRequestsOnOneConnection() throws {
        let loop = try EventLoop()
        var remotes = Set<String>()
        let server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, logger: testLogger) { request, responder in
            remotes.insert(request.remoteAddress)
            responder.respond(status: 200, body: Array("n=\(request.query)".utf8))
        }
        let port = server.boundPort
        var bodies: [String] = []
        var openDuring = 0
        loop.offload({ () -> Result<[String], ClientError> in
            do {
                let fd = try connectTCP(port: port)
                defer { try? Syscall.close(fd) }
                var results: [String] = []
                for n in 1...3 {
                    try sendAll(fd, Array("GET /k?\(n) HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                    // Each response is exactly head + 3-byte body; read the head then the body.
                    var head: [UInt8] = []
                    while !(head.count >= 4 && Array(head.suffix(4)) == [13, 10, 13, 10]) {
                        head += try readExactly(fd, 1)
                    }
                    results.append(String(decoding: try readExactly(fd, 3), as: UTF8.self))
                }
                return .success(results)
            } catch {
                return .failure(ClientError(description: "\(error)"))
            }
        }, completion: { result in
            openDuring = server.openConnections
            bodies = (try? result.get()) ?? []
            server.close()
        })
        runToCompletion(loop)
        XCTAssertEqual(bodies, ["n=1", "n=2", "n=3"])
        XCTAssertEqual(remotes.count, 1, "all three requests on one connection")
        XCTAssertLessThanOrEqual(openDuring, 1)
    }

    func testExpectContinueIsAnswered() throws {
        let loop = try EventLoop()
        let server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, logger: testLogger) { request, responder in
            responder.respond(status: 200, body: request.body)
        }
        let port = server.boundPort
        var interim = ""
        var final: [ParsedResponse] = []
        loop.offload({ () -> Result<(String, [UInt8]), ClientError> in
            do {
                let fd = try connectTCP(port: port)
                defer { try? Syscall.close(fd) }
                try sendAll(fd, Array("POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n".utf8))
                let continueLine = String(decoding: try readExactly(fd, 25), as: UTF8.self)
                try sendAll(fd, Array("body".utf8))
                return .success((continueLine, try readToEnd(fd)))
            } catch {
                return .failure(ClientError(description: "\(error)"))
            }
        }, completion: { result in
            if case .success(let (line, rest)) = result {
                interim = line
                final = (try? parseResponses(rest)) ?? []
            } else {
                XCTFail("client failed: \(result)")
            }
            server.close()
        })
        runToCompletion(loop)
        XCTAssertEqual(interim, "HTTP/1.1 100 Continue\r\n\r\n")
        XCTAssertEqual(final.map(\.status), [200])
        XCTAssertEqual(final.first?.bodyText, "body")
    }

    func testIdleConnectionIsClosed() throws {
        var options = HTTPServer.Options()
        options.idleTimeoutMilliseconds = 100
        let loop = try EventLoop()
        let server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, options: options, logger: testLogger) { _, responder in
            responder.respond(status: 200)
        }
        let port = server.boundPort
        var elapsed = 0.0
        var received: [UInt8] = [1]
        loop.offload({ () -> (Double, [UInt8]) in
            let start = Date()
            guard let fd = try? connectTCP(port: port) else { return (0, [9]) }
            defer { try? Syscall.close(fd) }
            let bytes = (try? readToEnd(fd)) ?? [9]
            return (Date().timeIntervalSince(start), bytes)
        }, completion: { result in
            (elapsed, received) = result
            XCTAssertEqual(server.openConnections, 0)
            server.close()
        })
        runToCompletion(loop)
        XCTAssertEqual(received, [], "closed without a response")
        XCTAssertGreaterThanOrEqual(elapsed, 0.09)
        XCTAssertLessThan(elapsed, 5)
    }

    func testStopAcceptingFinishesInFlightRequestThenCloses() throws {
        let loop = try EventLoop()
        var server: HTTPServer!
        var heldResponder: HTTPResponder?
        server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, logger: testLogger) { _, responder in
            heldResponder = responder
            server.stopAccepting()
            XCTAssertFalse(server.isListening)
            let timer = LoopTimer(loop: loop)
            timer.start(timeoutMilliseconds: 20) {
                responder.respond(status: 200, body: Array("drained".utf8))
                timer.close()
            }
        }
        let port = server.boundPort
        var outcome: Result<[UInt8], ClientError>?
        var refused = false
        loop.offload({ rawHTTPExchange(port: port, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n") }, completion: { result in
            outcome = result
            loop.offload({ cuv_tcp_connect("127.0.0.1", Int32(port)) }, completion: { fd in
                refused = fd == -ECONNREFUSED
                if fd >= 0 { try? Syscall.close(fd) }
            })
        })
        runToCompletion(loop)
        XCTAssertNotNil(heldResponder)
        let responses = try parseResponses(try XCTUnwrap(outcome).get())
        XCTAssertEqual(responses.map(\.bodyText), ["drained"])
        XCTAssertEqual(responses.first?.header("connection"), "close")
        XCTAssertEqual(server.openConnections, 0)
        XCTAssertTrue(refused, "no longer listening")
    }

    func testRespondAfterClientLeftIsANoOp() throws {
        let loop = try EventLoop()
        var responder: HTTPResponder?
        var server: HTTPServer!
        server = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, logger: testLogger) { _, r in
            responder = r
        }
        let port = server.boundPort
        loop.offload({ () -> Bool in
            guard let fd = try? connectTCP(port: port) else { return false }
            _ = try? sendAll(fd, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            usleep(50_000)
            try? Syscall.close(fd)
            return true
        }, completion: { sent in
            XCTAssertTrue(sent)
            let timer = LoopTimer(loop: loop)
            timer.start(timeoutMilliseconds: 50) {
                XCTAssertEqual(server.openConnections, 0, "server noticed the client left")
                XCTAssertEqual(responder?.isConnectionOpen, false)
                responder?.respond(status: 200)
                XCTAssertEqual(responder?.isAnswered, true)
                server.close()
                timer.close()
            }
        })
        runToCompletion(loop)
        XCTAssertNotNil(responder)
    }

    func testHeadRequestHasLengthButNoBodyAndHTTP10Closes() throws {
        let raw = try rawExchange(Array("HEAD /h HTTP/1.0\r\n\r\n".utf8)) { request, responder in
            XCTAssertEqual(request.method, "HEAD")
            responder.respond(status: 200, body: Array("12345".utf8))
        }
        let text = String(decoding: raw, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        XCTAssertTrue(text.hasSuffix("\r\n\r\n"), "no body after the head")
        XCTAssertTrue(text.contains("Content-Length: 5\r\n"))
        XCTAssertTrue(text.contains("Connection: close\r\n"), "HTTP/1.0 without keep-alive closes")
    }

    func testBindFailureAndBadAddressThrow() throws {
        let loop = try EventLoop()
        let first = try HTTPServer(loop: loop, host: "127.0.0.1", port: 0, logger: testLogger) { _, r in r.respond(status: 200) }
        XCTAssertThrowsError(try HTTPServer(loop: loop, host: "127.0.0.1", port: first.boundPort, logger: testLogger) { _, _ in }) { error in
            XCTAssertEqual((error as? UVError)?.code, Int32(UV_EADDRINUSE.rawValue))
        }
        XCTAssertThrowsError(try HTTPServer(loop: loop, host: "not-an-address", port: 0, logger: testLogger) { _, _ in }) { error in
            XCTAssertTrue(error is UVError)
        }
        first.close()
        runToCompletion(loop)
    }
}
