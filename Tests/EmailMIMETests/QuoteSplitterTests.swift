import EmailMIME
import XCTest

/// QuoteSplitter and HTMLText on their own.
final class QuoteSplitterTests: XCTestCase {
    func split(_ text: String) -> (String, String?) {
        let r = QuoteSplitter.split(text)
        return (r.new, r.quoted)
    }

    func testNoHistory() {
        XCTAssertTrue(split("Hello\n\nthere  \n\n") == ("Hello\n\nthere", nil))
        XCTAssertTrue(split("\n\nHello") == ("Hello", nil))
        XCTAssertTrue(split("") == ("", nil))
    }

    func testTrailingQuoteBlock() {
        XCTAssertTrue(split("Yes.\n\n> Can you come?\n>\n> Bob\n") == ("Yes.", "> Can you come?\n>\n> Bob"))
    }

    func testInterleavedQuotesStayNew() {
        let text = "> Can you come Monday?\nYes.\n> And Tuesday?\nNo."
        XCTAssertTrue(split(text) == (text, nil))
    }

    func testEnglishAttributionWrapped() {
        let text = "Thanks!\n\nOn Mon, Jan 8, 2024 at 10:00 AM Very Long Name <very.long.name@example.com>\nwrote:\n> old"
        XCTAssertTrue(split(text) == ("Thanks!", "On Mon, Jan 8, 2024 at 10:00 AM Very Long Name <very.long.name@example.com>\nwrote:\n> old"))
    }

    func testLocalisedAttributions() {
        XCTAssertEqual(split("Danke\nAm 08.01.2024 um 10:00 schrieb Max <max@example.de>:\n> alt").0, "Danke")
        XCTAssertEqual(split("Merci\n\nLe lun. 8 janv. 2024 à 10:00, Marie <marie@example.fr> a écrit :\n> ancien").0, "Merci")
        XCTAssertEqual(split("Merci\nLe 8 janv. 2024 à 10:00, Marie a écrit\u{00A0}:\n> ancien").0, "Merci")
        XCTAssertEqual(split("Gracias\nEl lun, 8 ene 2024 a las 10:00, Juan (<juan@example.es>) escribió:\n> viejo").0, "Gracias")
        XCTAssertEqual(split("Grazie\nIl giorno lun 8 gen 2024 alle ore 10:00 Luca <l@example.it> ha scritto:\n> vecchio").0, "Grazie")
        XCTAssertEqual(split("Bedankt\nOp ma 8 jan. 2024 om 10:00 schreef Jan <jan@example.nl>:\n> oud").0, "Bedankt")
    }

    func testAttributionIsHistoryEvenWithoutQuotes() {
        // Some clients put the history below the attribution without ">" prefixes.
        XCTAssertTrue(split("OK\n\nOn 1/8/24 10:00, Bob wrote:\nold text\nmore") == ("OK", "On 1/8/24 10:00, Bob wrote:\nold text\nmore"))
    }

    func testOutlookOriginalMessage() {
        XCTAssertTrue(split("See below.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nhi") == ("See below.", "-----Original Message-----\nFrom: Bob\nSent: Monday\nhi"))
        XCTAssertEqual(split("Siehe unten.\n-----Ursprüngliche Nachricht-----\nVon: Bob").0, "Siehe unten.")
    }

    func testOutlookHeaderBlock() {
        let text = "Done.\n\n________________________________\nFrom: Shop <s@shop.example>\nSent: Friday, May 17, 2024 2:30 PM\nTo: Priya\nSubject: Invoice\n\nold"
        XCTAssertTrue(split(text) == ("Done.", "________________________________\nFrom: Shop <s@shop.example>\nSent: Friday, May 17, 2024 2:30 PM\nTo: Priya\nSubject: Invoice\n\nold"))
        // Outlook's plain text bolds the field names; German labels.
        XCTAssertEqual(split("Ok.\n*From:* Shop\n*Sent:* Friday\n*To:* Priya\nold").0, "Ok.")
        XCTAssertEqual(split("Ok.\nVon: Shop\nGesendet: Freitag\nAn: Priya\nBetreff: Rechnung\nalt").0, "Ok.")
        XCTAssertEqual(split("Ok.\nDe : Shop\nEnvoyé : vendredi\nÀ : Priya\nObjet : Facture\nancien").0, "Ok.")
        // A lone "From:" line is not a header block.
        let lone = "Please change the sender.\nFrom: me\nThanks"
        XCTAssertTrue(split(lone) == (lone, nil))
    }

    func testForwardIsNotHistory() {
        let gmail = "FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Bank <alerts@bank.example>\nDate: Wed, May 22, 2024 at 10:00 PM\nSubject: Charge\nTo: <olivia@example.com>\n\nA charge was made.\n\nOn Tue, Bob wrote:\n> older"
        XCTAssertTrue(split(gmail) == ("FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Bank <alerts@bank.example>\nDate: Wed, May 22, 2024 at 10:00 PM\nSubject: Charge\nTo: <olivia@example.com>\n\nA charge was made.\n\nOn Tue, Bob wrote:\n> older", nil))
        XCTAssertEqual(split("See this\n\nBegin forwarded message:\n\nFrom: X\nDate: Y\nSubject: Z\nTo: W\n\nbody").1, nil)
        XCTAssertEqual(split("See\n-------- Forwarded Message --------\nSubject: Z\nbody").1, nil)
    }

    func testSignatureIsRemovedFromNew() {
        XCTAssertTrue(split("Thanks!\n-- \nBob Smith\nACME Corp") == ("Thanks!", "-- \nBob Smith\nACME Corp"))
        // Signature and history: both removed, in order.
        XCTAssertTrue(split("Yes.\n\n-- \nBob\n\nOn Mon, Alice wrote:\n> Q?") == ("Yes.", "-- \nBob\n\nOn Mon, Alice wrote:\n> Q?"))
        // A message that is only a signature keeps it.
        XCTAssertTrue(split("-- \nBob") == ("-- \nBob", nil))
        // A bare "--" counts only before a short block.
        XCTAssertEqual(split("Hi\n--\nBob").0, "Hi")
        let longTail = "Hi\n--\n" + (1...12).map { "line \($0)" }.joined(separator: "\n")
        XCTAssertTrue(split(longTail) == (longTail, nil))
        // The last separator wins.
        XCTAssertTrue(split("a\n-- \nb\n-- \nc") == ("a\n-- \nb", "-- \nc"))
    }

    func testCRLFInput() {
        XCTAssertTrue(split("Yes.\r\n\r\n> old\r\n") == ("Yes.", "> old"))
    }
}

final class HTMLTextTests: XCTestCase {
    func testStructure() {
        let html = """
        <html><head><title>T</title><style>p{x:y}</style><script>alert(1)</script></head>
        <body><p>First  paragraph
        continues.</p><div>Line<br>break</div><ul><li>one</li><li>two</li></ul>
        <table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
        <pre>  keep   spaces
        here</pre><!-- a comment --><!--[if mso]><p>outlook only</p><![endif]--></body></html>
        """
        let r = HTMLText.plainText(html)
        XCTAssertEqual(r.text, "First paragraph continues.\nLine\nbreak\n- one\n- two\na b\nc d\n  keep   spaces\nhere")
        XCTAssertNil(r.quoted)
    }

    func testEntities() {
        XCTAssertEqual(HTMLText.plainText("a&amp;b &lt;c&gt; &quot;d&quot; &#39;e&#x27; &euro;5 &copy &nbsp;x &bogus; &#150; &hellip;").text,
                       "a&b <c> \"d\" 'e' €5 © x &bogus; – …")
    }

    func testBlockquotesGoToQuoted() {
        let r = HTMLText.plainText("<div>New text</div><blockquote>old <b>one</b><blockquote>older</blockquote></blockquote><div>after</div><blockquote>second</blockquote>")
        XCTAssertEqual(r.text, "New text\nafter")
        XCTAssertEqual(r.quoted, "old one\nolder\n\nsecond")
    }

    func testLinks() {
        XCTAssertEqual(HTMLText.plainText("<a href=\"https://x.example/a?b=1&amp;c=2\">Track</a>").text, "Track (https://x.example/a?b=1&c=2)")
        XCTAssertEqual(HTMLText.plainText("<a href='https://x.example/'>https://x.example/</a>").text, "https://x.example/")
        XCTAssertEqual(HTMLText.plainText("<a href=https://x.example>x.example</a>").text, "x.example")
        XCTAssertEqual(HTMLText.plainText("<a href=\"mailto:a@b.example\">write</a>").text, "write")
    }

    func testLargeHTMLIsLinear() {
        // 20,000 links (~2 MB): a quadratic converter takes minutes here, a linear one well under a second.
        var html = ""
        for i in 0..<20000 { html += "<div>Line \(i) &amp; <a href=\"https://e.example/\(i)\">link</a></div>\n" }
        let started = Date()
        let r = HTMLText.plainText(html)
        XCTAssertLessThan(Date().timeIntervalSince(started), 15)
        XCTAssertTrue(r.text.hasPrefix("Line 0 & link (https://e.example/0)\nLine 1 & link (https://e.example/1)\n"))
        XCTAssertTrue(r.text.hasSuffix("Line 19999 & link (https://e.example/19999)"))
    }

    func testMalformedHTML() {
        XCTAssertEqual(HTMLText.plainText("1 < 2 and <b>bold").text, "1 < 2 and bold")
        XCTAssertEqual(HTMLText.plainText("<head><meta charset=utf-8>Body without closing head").text, "Body without closing head")
        XCTAssertEqual(HTMLText.plainText("<p>unterminated <style>css").text, "unterminated")
        XCTAssertEqual(HTMLText.plainText("").text, "")
    }
}
