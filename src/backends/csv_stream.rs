//! CSV read as it arrives: a body's chunks are pushed in and each record is handed over as it completes (an
//! answer of a million rows is parsed as it comes, never held whole). The parsing is `csv_core`'s, the one the
//! `csv` crate uses: quotes, doubled quotes, newlines inside quotes and CRLF read the same.

use csv_core::{ReadRecordResult, Reader};

/// One record's fields, borrowed from the parser until the next one.
pub struct Record<'a> {
    text: &'a str,
    ends: &'a [usize],
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i`, when the record has one.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// What stops a record from being handed over.
#[derive(Debug, PartialEq)]
pub enum StreamError<E> {
    /// Record `n` (1 is the first line of the file) is not UTF-8.
    NotUtf8(usize),
    /// Record `n` is longer than the stream's bound (a body that never ends its line).
    TooLong(usize),
    /// What the record's reader refused.
    Refused(E),
}

/// The parser's state between chunks: the record read so far and how many records came before it.
pub struct CsvStream {
    core: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    outlen: usize,
    endlen: usize,
    records: usize,
    /// The longest record read, in bytes.
    max_record: usize,
    /// The body's first bytes until it is known whether they begin with a byte-order mark.
    head: Option<Vec<u8>>,
}

impl CsvStream {
    /// A stream whose records are at most `max_record` bytes (what a record holds grows to that, and no more).
    pub fn new(max_record: usize) -> Self {
        CsvStream {
            core: Reader::new(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            outlen: 0,
            endlen: 0,
            records: 0,
            max_record,
            head: Some(Vec::new()),
        }
    }

    /// Parses `chunk`, handing `each` every record it completes with its number (1: the first line).
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        each: &mut impl FnMut(usize, &Record) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        if chunk.is_empty() {
            // An empty input is the parser's sign that the body ended: that is `finish`'s to say.
            return Ok(());
        }
        if self.head.is_some() {
            return self.start(chunk, 3, each);
        }
        self.feed(chunk, each)
    }

    /// The body's first bytes, gathered until a byte-order mark can be told (it is not part of the first
    /// column's name, and may come split across chunks), then parsed.
    fn start<E>(
        &mut self,
        chunk: &[u8],
        enough: usize,
        each: &mut impl FnMut(usize, &Record) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        let mut head = self.head.take().unwrap_or_default();
        head.extend_from_slice(chunk);
        if head.len() < enough {
            self.head = Some(head);
            return Ok(());
        }
        self.feed(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head), each)
    }

    fn feed<E>(
        &mut self,
        mut chunk: &[u8],
        each: &mut impl FnMut(usize, &Record) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        loop {
            let (result, read) = self.step(chunk)?;
            chunk = &chunk[read..];
            match result {
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return Ok(()),
                ReadRecordResult::Record => self.hand_over(each)?,
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
            }
        }
    }

    /// Reads what is left once the body has ended (a last line with no newline).
    pub fn finish<E>(&mut self, each: &mut impl FnMut(usize, &Record) -> Result<(), E>) -> Result<(), StreamError<E>> {
        if self.head.is_some() {
            self.start(&[], 0, each)?;
        }
        loop {
            match self.step(&[])?.0 {
                ReadRecordResult::End => return Ok(()),
                ReadRecordResult::Record => self.hand_over(each)?,
                _ => {}
            }
        }
    }

    /// One call to the parser, the record's buffers grown when it asks (up to the bound); (its result, bytes of
    /// `input` read).
    fn step<E>(&mut self, input: &[u8]) -> Result<(ReadRecordResult, usize), StreamError<E>> {
        let (result, read, written, ended) =
            self.core.read_record(input, &mut self.out[self.outlen..], &mut self.ends[self.endlen..]);
        self.outlen += written;
        self.endlen += ended;
        let too_long = || StreamError::TooLong(self.records + 1);
        match result {
            ReadRecordResult::OutputFull if self.out.len() >= self.max_record => return Err(too_long()),
            ReadRecordResult::OutputEndsFull if self.ends.len() >= self.max_record => return Err(too_long()),
            ReadRecordResult::OutputFull => self.out.resize((self.out.len() * 2).min(self.max_record), 0),
            ReadRecordResult::OutputEndsFull => self.ends.resize((self.ends.len() * 2).min(self.max_record), 0),
            _ => {}
        }
        Ok((result, read))
    }

    fn hand_over<E>(&mut self, each: &mut impl FnMut(usize, &Record) -> Result<(), E>) -> Result<(), StreamError<E>> {
        self.records += 1;
        let (outlen, endlen) = (self.outlen, self.endlen);
        self.outlen = 0;
        self.endlen = 0;
        let text = std::str::from_utf8(&self.out[..outlen]).map_err(|_| StreamError::NotUtf8(self.records))?;
        each(self.records, &Record { text, ends: &self.ends[..endlen] }).map_err(StreamError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(body: &[u8], chunk: usize) -> Vec<(usize, Vec<String>)> {
        let mut out = Vec::new();
        let mut stream = CsvStream::new(1 << 20);
        let mut each = |n: usize, r: &Record| -> Result<(), ()> {
            out.push((n, r.iter().map(str::to_string).collect()));
            Ok(())
        };
        for piece in body.chunks(chunk) {
            stream.push(piece, &mut each).unwrap();
        }
        stream.finish(&mut each).unwrap();
        out
    }

    #[test]
    fn records_split_anywhere_across_chunks_read_as_the_csv_crate_reads_them() {
        let long = "x".repeat(10_000);
        let body =
            format!("\u{feff}login,note\r\nalice,\"a, \"\"quoted\"\"\nnote\"\nbob,{long}\ncarol,é\nlast,no newline");
        let whole = records(body.as_bytes(), body.len());
        for size in [1, 2, 3, 7, 4096] {
            assert_eq!(records(body.as_bytes(), size), whole, "chunks of {size}");
        }
        let mut by_csv = csv::ReaderBuilder::new().has_headers(false).from_reader(body.as_bytes());
        let expected: Vec<Vec<String>> =
            by_csv.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
        assert_eq!(whole.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), expected);
        assert_eq!(whole[0].1, ["login", "note"], "the byte-order mark is not in the first name");
        assert_eq!(whole[1].1[1], "a, \"quoted\"\nnote");
        assert_eq!(whole.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_record_that_is_not_utf8_is_named_and_a_refusal_stops_the_reading() {
        let mut stream = CsvStream::new(1 << 20);
        let mut seen = 0;
        let mut each = |_: usize, _: &Record| -> Result<(), &str> {
            seen += 1;
            Ok(())
        };
        assert_eq!(stream.push(b"a,b\nc,\xff\n", &mut each), Err(StreamError::NotUtf8(2)));
        let mut stream = CsvStream::new(1 << 20);
        let mut refuse = |n: usize, _: &Record| if n == 2 { Err("no") } else { Ok(()) };
        assert_eq!(stream.push(b"a\nb\nc\n", &mut refuse), Err(StreamError::Refused("no")));
        assert_eq!(seen, 1);
        let mut stream = CsvStream::new(10_000);
        let mut any = |_: usize, _: &Record| -> Result<(), ()> { Ok(()) };
        stream.push(b"short\n", &mut any).unwrap();
        let endless = vec![b'['; 4096];
        let grown = (0..4).map(|_| stream.push(&endless, &mut any)).find(Result::is_err);
        assert_eq!(grown, Some(Err(StreamError::TooLong(2))), "a line that never ends is refused at the bound");
    }
}
