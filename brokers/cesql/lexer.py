"""Turn CESQL text into tokens.

Hand-written rather than generated (the SDKs use ANTLR) because the lexical grammar is tiny and
a dependency-free scanner gives exact error positions. Choices the spec leaves to the lexer:

* keywords are case-insensitive (spec 2); a token's `text` holds them upper-cased;
* a run of ASCII letters, digits and `_` is one word: all digits is an integer literal (its sign
  is handled by the parser, so `4 -1` stays a subtraction), anything else a keyword or a name;
* in a string literal only a backslash before the delimiting quote is an escape (`'it\\'s'`);
  a backslash before any other character is kept, pair and all, so LIKE patterns can still say
  `\\%` and `'ab\\c'` means the four characters `ab\\c` (as in the TCK and the Go and Java SDKs);
* whitespace is space, tab, CR and LF, as in the reference grammar.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from brokers.cesql.errors import CesqlParseError


class TokenKind(enum.Enum):
    NUMBER = "integer literal"
    STRING = "string literal"
    NAME = "name"
    KEYWORD = "keyword"
    SYMBOL = "symbol"
    END = "end of expression"


KEYWORDS: Final = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"})

_WHITESPACE: Final = frozenset(" \t\r\n")
_WORD_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TWO_CHAR_SYMBOLS: Final = frozenset({"!=", "<>", "<=", ">="})
_ONE_CHAR_SYMBOLS: Final = frozenset("()+-*/%=<>,")


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # source text; keywords upper-cased
    pos: int
    value: str = ""  # the unescaped content of a string literal

    def is_keyword(self, word: str) -> bool:
        return self.kind is TokenKind.KEYWORD and self.text == word

    def is_symbol(self, symbol: str) -> bool:
        return self.kind is TokenKind.SYMBOL and self.text == symbol

    def describe(self) -> str:
        if self.kind is TokenKind.END:
            return "end of expression"
        return f"{self.kind.value} {self.text!r}"


def tokenize(text: str) -> list[Token]:
    """All tokens of `text`, ending with an END token. Raises CesqlParseError."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in _WHITESPACE:
            i += 1
        elif char in "'\"":
            value, end = _string(text, i)
            tokens.append(Token(TokenKind.STRING, text[i:end], i, value))
            i = end
        elif char in _WORD_CHARS:
            end = i + 1
            while end < n and text[end] in _WORD_CHARS:
                end += 1
            tokens.append(_word(text[i:end], i))
            i = end
        elif text[i : i + 2] in _TWO_CHAR_SYMBOLS:
            tokens.append(Token(TokenKind.SYMBOL, text[i : i + 2], i))
            i += 2
        elif char in _ONE_CHAR_SYMBOLS:
            tokens.append(Token(TokenKind.SYMBOL, char, i))
            i += 1
        else:
            raise CesqlParseError(f"unexpected character {char!r}", i)
    tokens.append(Token(TokenKind.END, "", n))
    return tokens


def _word(word: str, pos: int) -> Token:
    if word.isdigit():
        return Token(TokenKind.NUMBER, word, pos)
    upper = word.upper()
    if upper in KEYWORDS:
        return Token(TokenKind.KEYWORD, upper, pos)
    return Token(TokenKind.NAME, word, pos)


def _string(text: str, start: int) -> tuple[str, int]:
    """The value of the string literal opening at `start`, and the offset just past it."""
    quote = text[start]
    parts: list[str] = []
    i = segment = start + 1
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            if text[i + 1] == quote:
                parts.append(text[segment:i])
                parts.append(quote)
                segment = i + 2
            i += 2
        elif char == quote:
            parts.append(text[segment:i])
            return "".join(parts), i + 1
        else:
            i += 1
    raise CesqlParseError("unterminated string literal", start)
