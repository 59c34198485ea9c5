// The safe pickle subset, written by hand: Boost has no pickle codec, and a general
// unpickler (e.g. embedding Python's) is exactly what must not run on network input. The
// reference is the traffic CPython's managers send (tests/data/python-wire-vectors).
#include "mpp/net/pickle.hpp"

#include <array>
#include <bit>
#include <cstring>
#include <memory>
#include <unordered_map>

namespace mpp::net {
namespace {

// Exceptions the decoder turns into ExceptionValue and the encoder writes, by module.
constexpr std::array<std::string_view, 34> kBuiltinExceptions = {"ArithmeticError",
                                                                 "AssertionError",
                                                                 "AttributeError",
                                                                 "BaseException",
                                                                 "BrokenPipeError",
                                                                 "BufferError",
                                                                 "ConnectionError",
                                                                 "ConnectionAbortedError",
                                                                 "ConnectionRefusedError",
                                                                 "ConnectionResetError",
                                                                 "EOFError",
                                                                 "Exception",
                                                                 "FileExistsError",
                                                                 "FileNotFoundError",
                                                                 "FloatingPointError",
                                                                 "IndexError",
                                                                 "InterruptedError",
                                                                 "KeyError",
                                                                 "LookupError",
                                                                 "MemoryError",
                                                                 "NameError",
                                                                 "NotImplementedError",
                                                                 "OSError",
                                                                 "OverflowError",
                                                                 "PermissionError",
                                                                 "RecursionError",
                                                                 "RuntimeError",
                                                                 "StopIteration",
                                                                 "TimeoutError",
                                                                 "TypeError",
                                                                 "UnicodeDecodeError",
                                                                 "UnicodeEncodeError",
                                                                 "ValueError",
                                                                 "ZeroDivisionError"};

bool is_allowed_exception(std::string_view module, std::string_view name) {
  if (module == "queue" || module == "_queue")
    return name == "Empty" || (module == "queue" && name == "Full");
  if (module != "builtins") return false;
  for (auto n : kBuiltinExceptions)
    if (n == name) return true;
  return false;
}

// ----- decoder ---------------------------------------------------------------------------

enum class Kind : std::uint8_t {
  none,
  boolean,
  integer,
  bigint,
  floating,
  str,
  bytes,
  bytearray,
  tuple,
  list,
  dict,
  set,
  frozenset,
  global,
  exception,
  token_pending,
  token,
  slice
};

// Decoded objects live in an arena owned by the decoder and refer to each other by raw
// pointer, so memo sharing and even self-referencing lists (which a hostile pickle can
// build) cost no reference counting and cannot leak.
struct Node {
  Kind kind = Kind::none;
  std::int64_t i = 0;
  double f = 0;
  std::string s, s2;  // str/bytes payload; module and name of a global or exception
  std::vector<Node*>
      items;              // tuple/list/set items; dict keys and values interleaved; exception args
  Node* state = nullptr;  // exception __dict__, token state tuple
};

bool valid_utf8(std::string_view s) {
  // UTF-8, also accepting encoded lone surrogates, which Python writes with surrogatepass.
  std::size_t i = 0, n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return false;
    i += len;
  }
  return true;
}

class Decoder {
 public:
  Decoder(std::string_view data, const PickleLimits& lim) : d_(data), lim_(lim) {}

  PyObject run() {
    while (true) {
      if (pos_ >= d_.size()) fail("truncated pickle: no STOP opcode");
      std::size_t at = pos_;
      auto op = static_cast<unsigned char>(d_[pos_++]);
      if (op == '.') {
        if (stack_.size() != 1 || !marks_.empty())
          fail("STOP with " + std::to_string(stack_.size()) + " items on the stack");
        if (pos_ != d_.size()) fail(std::to_string(d_.size() - pos_) + " bytes after STOP");
        std::size_t budget = 0;
        return convert(stack_.back(), 0, budget);
      }
      step(op, at);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw DecodeError("cannot unpickle: " + what + " (at byte " + std::to_string(pos_) + ")");
  }

  std::string_view take(std::uint64_t n) {
    if (n > d_.size() - pos_) fail("truncated pickle: needs " + std::to_string(n) + " more bytes");
    auto r = d_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return r;
  }
  std::uint64_t le(std::size_t n) {
    auto b = take(n);
    std::uint64_t v = 0;
    for (std::size_t k = n; k-- > 0;) v = (v << 8) | static_cast<unsigned char>(b[k]);
    return v;
  }

  Node* make(Kind k) {
    arena_.push_back(std::make_unique<Node>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  void push(Node* n) { stack_.push_back(n); }
  Node* pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    Node* n = stack_.back();
    stack_.pop_back();
    return n;
  }
  Node* top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<Node*> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Node*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void memo_put(std::uint64_t idx) {
    if (memo_.size() >= lim_.max_memo && !memo_.count(idx)) fail("memo larger than the limit");
    memo_[idx] = top();
  }
  void memo_get(std::uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo key " + std::to_string(idx) + " was never stored");
    push(it->second);
  }

  Node* str_node(Kind k, std::string_view b) {
    if (k == Kind::str && !valid_utf8(b)) fail("a str that is not valid UTF-8");
    Node* n = make(k);
    n->s.assign(b);
    return n;
  }
  Node* int_node(std::int64_t v) {
    Node* n = make(Kind::integer);
    n->i = v;
    return n;
  }
  Node* long_node(std::string_view le_bytes) {
    std::string b(le_bytes);
    // Drop redundant sign bytes so each value has one form, then use int64 when it fits.
    while (b.size() > 1) {
      auto last = static_cast<unsigned char>(b.back());
      auto prev = static_cast<unsigned char>(b[b.size() - 2]);
      if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80)))
        b.pop_back();
      else
        break;
    }
    if (b.size() <= 8) {
      std::uint64_t u = 0;
      for (std::size_t k = b.size(); k-- > 0;) u = (u << 8) | static_cast<unsigned char>(b[k]);
      if (!b.empty() && (static_cast<unsigned char>(b.back()) & 0x80) && b.size() < 8)
        u |= ~std::uint64_t{0} << (8 * b.size());
      return int_node(static_cast<std::int64_t>(u));
    }
    Node* n = make(Kind::bigint);
    n->s = std::move(b);
    return n;
  }
  Node* tuple_of(std::vector<Node*> items) {
    Node* n = make(Kind::tuple);
    n->items = std::move(items);
    return n;
  }
  Node* global(std::string module, std::string name) {
    bool ok = is_allowed_exception(module, name) ||
              (module == "multiprocessing.managers" && name == "Token") ||
              (module == "builtins" && (name == "set" || name == "frozenset" ||
                                        name == "bytearray" || name == "list" || name == "slice"));
    if (!ok) {
      fail("the global " + module + "." + name +
           " is not allowed (only queue.Empty/Full, builtins exceptions, set, frozenset, "
           "bytearray, list, slice and multiprocessing.managers.Token are)");
    }
    Node* n = make(Kind::global);
    n->s = std::move(module);
    n->s2 = std::move(name);
    return n;
  }
  void check_depth() {
    if (marks_.size() > lim_.max_depth)
      fail("more than " + std::to_string(lim_.max_depth) + " nested MARKs");
  }

  void step(unsigned char op, std::size_t at) {
    switch (op) {
      case 0x80: {  // PROTO
        auto v = static_cast<unsigned char>(take(1)[0]);
        if (v < 2 || v > 5) fail("pickle protocol " + std::to_string(v) + " is not supported");
        break;
      }
      case 0x95:
        le(8);
        break;  // FRAME: a read-ahead hint only
      case '(':
        marks_.push_back(stack_.size());
        check_depth();
        break;
      case 'N':
        push(make(Kind::none));
        break;
      case 0x88:
      case 0x89: {
        Node* n = make(Kind::boolean);
        n->i = op == 0x88;
        push(n);
        break;
      }
      case 'J':
        push(int_node(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)))));
        break;
      case 'K':
        push(int_node(static_cast<std::int64_t>(le(1))));
        break;
      case 'M':
        push(int_node(static_cast<std::int64_t>(le(2))));
        break;
      case 0x8a:
      case 0x8b: {
        std::uint64_t n = op == 0x8a ? le(1) : le(4);
        if (op == 0x8b && (n & 0x80000000u)) fail("LONG4 with a negative length");
        if (n > lim_.max_bigint_bytes)
          fail("an int of " + std::to_string(n) + " bytes, more than the limit");
        push(long_node(take(n)));
        break;
      }
      case 'G': {
        std::uint64_t u = 0;
        for (char c : take(8)) u = (u << 8) | static_cast<unsigned char>(c);
        Node* n = make(Kind::floating);
        n->f = std::bit_cast<double>(u);
        push(n);
        break;
      }
      case 0x8c:
        push(str_node(Kind::str, take(le(1))));
        break;
      case 'X':
        push(str_node(Kind::str, take(le(4))));
        break;
      case 0x8d:
        push(str_node(Kind::str, take(le(8))));
        break;
      case 'C':
        push(str_node(Kind::bytes, take(le(1))));
        break;
      case 'B':
        push(str_node(Kind::bytes, take(le(4))));
        break;
      case 0x8e:
        push(str_node(Kind::bytes, take(le(8))));
        break;
      case 0x96:
        push(str_node(Kind::bytearray, take(le(8))));
        break;
      case ')':
        push(tuple_of({}));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {
        std::size_t n = op - 0x84u;
        std::vector<Node*> items(n);
        for (std::size_t k = n; k-- > 0;) items[k] = pop();
        push(tuple_of(std::move(items)));
        break;
      }
      case 't':
        push(tuple_of(pop_mark()));
        break;
      case ']':
        push(make(Kind::list));
        break;
      case 'l': {
        Node* n = make(Kind::list);
        n->items = pop_mark();
        push(n);
        break;
      }
      case 'a': {
        Node* v = pop();
        Node* l = top();
        if (l->kind != Kind::list) fail("APPEND to a non-list");
        l->items.push_back(v);
        break;
      }
      case 'e': {
        auto items = pop_mark();
        Node* l = top();
        if (l->kind != Kind::list) fail("APPENDS to a non-list");
        l->items.insert(l->items.end(), items.begin(), items.end());
        break;
      }
      case '}':
        push(make(Kind::dict));
        break;
      case 'd': {
        auto items = pop_mark();
        if (items.size() % 2) fail("DICT with an odd number of items");
        Node* n = make(Kind::dict);
        n->items = std::move(items);
        push(n);
        break;
      }
      case 's': {
        Node* v = pop();
        Node* k = pop();
        Node* d = top();
        if (d->kind != Kind::dict) fail("SETITEM on a non-dict");
        d->items.push_back(k);
        d->items.push_back(v);
        break;
      }
      case 'u': {
        auto items = pop_mark();
        if (items.size() % 2) fail("SETITEMS with an odd number of items");
        Node* d = top();
        if (d->kind != Kind::dict) fail("SETITEMS on a non-dict");
        d->items.insert(d->items.end(), items.begin(), items.end());
        break;
      }
      case 0x8f:
        push(make(Kind::set));
        break;
      case 0x90: {
        auto items = pop_mark();
        Node* s = top();
        if (s->kind != Kind::set) fail("ADDITEMS on a non-set");
        s->items.insert(s->items.end(), items.begin(), items.end());
        break;
      }
      case 0x91: {
        Node* n = make(Kind::frozenset);
        n->items = pop_mark();
        push(n);
        break;
      }
      case 0x94:
        memo_put(memo_.size());
        break;
      case 'q':
        memo_put(le(1));
        break;
      case 'r':
        memo_put(le(4));
        break;
      case 'h':
        memo_get(le(1));
        break;
      case 'j':
        memo_get(le(4));
        break;
      case 'c': {
        auto line = [&] {
          auto rest = d_.substr(pos_);
          auto nl = rest.find('\n');
          if (nl == std::string_view::npos || nl > 256)
            fail("GLOBAL without a short newline-terminated name");
          pos_ += nl + 1;
          return std::string(rest.substr(0, nl));
        };
        std::string module = line();
        std::string name = line();
        push(global(std::move(module), std::move(name)));
        break;
      }
      case 0x93: {
        Node* name = pop();
        Node* module = pop();
        if (name->kind != Kind::str || module->kind != Kind::str)
          fail("STACK_GLOBAL needs two str");
        push(global(module->s, name->s));
        break;
      }
      case 'R': {
        Node* args = pop();
        Node* fn = pop();
        if (fn->kind != Kind::global || args->kind != Kind::tuple)
          fail("REDUCE needs an allowed global and a tuple");
        push(reduce(fn, args));
        break;
      }
      case 0x81: {
        Node* args = pop();
        Node* cls = pop();
        if (cls->kind != Kind::global || cls->s2 != "Token" || args->kind != Kind::tuple ||
            !args->items.empty())
          fail("NEWOBJ is only allowed for multiprocessing.managers.Token with no arguments");
        push(make(Kind::token_pending));
        break;
      }
      case 'b': {
        Node* state = pop();
        Node* obj = top();
        if (obj->kind == Kind::token_pending && state->kind == Kind::tuple &&
            state->items.size() == 3) {
          obj->kind = Kind::token;
          obj->state = state;
        } else if (obj->kind == Kind::exception && state->kind == Kind::dict && !obj->state) {
          obj->state = state;
        } else {
          fail("BUILD is only allowed on a Token (3-tuple state) or an exception (dict state)");
        }
        break;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        pos_ = at;
        fail(std::string("opcode ") + hex + " is outside the supported subset");
      }
    }
  }

  Node* reduce(Node* fn, Node* args) {
    const auto& a = args->items;
    if (fn->s == "builtins" && (fn->s2 == "set" || fn->s2 == "frozenset")) {
      Node* n = make(fn->s2 == "set" ? Kind::set : Kind::frozenset);
      if (a.size() == 1 && a[0]->kind == Kind::list)
        n->items = a[0]->items;
      else if (!a.empty())
        fail("builtins." + fn->s2 + " needs one list argument");
      return n;
    }
    if (fn->s == "builtins" && fn->s2 == "bytearray") {
      Node* n = make(Kind::bytearray);
      if (a.size() == 1 && a[0]->kind == Kind::bytes)
        n->s = a[0]->s;
      else if (!a.empty())
        fail("builtins.bytearray needs one bytes argument");
      return n;
    }
    // CPython's managers send dict views (d.keys(), .values(), .items()) as list(<a list>).
    if (fn->s == "builtins" && fn->s2 == "list") {
      Node* n = make(Kind::list);
      if (a.size() == 1 && a[0]->kind == Kind::list)
        n->items = a[0]->items;
      else if (!a.empty())
        fail("builtins.list needs one list argument");
      return n;
    }
    // A proxy's l[1:3] sends slice(1, 3, None).
    if (fn->s == "builtins" && fn->s2 == "slice") {
      if (a.empty() || a.size() > 3) fail("builtins.slice needs 1 to 3 arguments");
      Node* n = make(Kind::slice);
      for (const Node* b : a)
        if (b->kind != Kind::integer && b->kind != Kind::none)
          fail("a slice bound that is not an int or None");
      n->items = a;
      return n;
    }
    if (fn->s2 == "Token") fail("REDUCE of a Token");
    Node* n = make(Kind::exception);
    n->s = fn->s == "_queue" ? "queue" : fn->s;
    n->s2 = fn->s2;
    n->items = a;
    return n;
  }

  PyObject convert(const Node* n, std::size_t depth, std::size_t& budget) {
    if (depth > lim_.max_depth) fail("values nested deeper than " + std::to_string(lim_.max_depth));
    if (++budget > lim_.max_items) fail("more than " + std::to_string(lim_.max_items) + " values");
    auto seq = [&](const std::vector<Node*>& items) {
      std::vector<PyObject> out;
      out.reserve(items.size());
      for (const Node* x : items) out.push_back(convert(x, depth + 1, budget));
      return out;
    };
    auto pairs = [&](const std::vector<Node*>& items) {
      std::vector<std::pair<PyObject, PyObject>> out;
      out.reserve(items.size() / 2);
      for (std::size_t k = 0; k + 1 < items.size(); k += 2)
        out.emplace_back(convert(items[k], depth + 1, budget),
                         convert(items[k + 1], depth + 1, budget));
      return out;
    };
    switch (n->kind) {
      case Kind::none:
        return PyObject();
      case Kind::boolean:
        return PyObject(n->i != 0);
      case Kind::integer:
        return PyObject(n->i);
      case Kind::bigint:
        return PyObject(BigInt{n->s});
      case Kind::floating:
        return PyObject(n->f);
      case Kind::str:
        return PyObject(n->s);
      case Kind::bytes:
        return PyObject(Bytes{n->s});
      case Kind::bytearray:
        return PyObject(ByteArray{n->s});
      case Kind::tuple:
        return PyObject(Tuple{seq(n->items)});
      case Kind::list:
        return PyObject(List{seq(n->items)});
      case Kind::dict:
        return PyObject(Dict{pairs(n->items)});
      case Kind::set:
        return PyObject(Set{seq(n->items), false});
      case Kind::frozenset:
        return PyObject(Set{seq(n->items), true});
      case Kind::exception: {
        ExceptionValue e{n->s, n->s2, seq(n->items), {}};
        if (n->state) e.state = pairs(n->state->items);
        return PyObject(std::move(e));
      }
      case Kind::token: {
        const auto& st = n->state->items;
        Token t;
        if (st[0]->kind != Kind::str || st[2]->kind != Kind::str)
          fail("a Token whose typeid or id is not a str");
        t.typeid_ = st[0]->s;
        t.id = st[2]->s;
        const Node* addr = st[1];
        if (addr->kind == Kind::str) {
          t.host = addr->s;
        } else if (addr->kind == Kind::tuple && addr->items.size() == 2 &&
                   addr->items[0]->kind == Kind::str && addr->items[1]->kind == Kind::integer) {
          t.host = addr->items[0]->s;
          t.port = addr->items[1]->i;
        } else {
          fail("a Token whose address is neither (host, port) nor a path");
        }
        return PyObject(std::move(t));
      }
      case Kind::slice: {
        // slice(stop), slice(start, stop) or slice(start, stop, step), as Python's slice().
        auto bound = [](const Node* b) -> std::optional<std::int64_t> {
          if (b->kind == Kind::none) return std::nullopt;
          return b->i;
        };
        const auto& a = n->items;
        Slice sl;
        if (a.size() == 1) {
          sl.stop = bound(a[0]);
        } else {
          sl.start = bound(a[0]);
          sl.stop = bound(a[1]);
          if (a.size() == 3) sl.step = bound(a[2]);
        }
        return PyObject(sl);
      }
      case Kind::global:
        fail("a bare class reference " + n->s + "." + n->s2 + " is not a value");
      case Kind::token_pending:
        fail("a Token without its state");
    }
    fail("corrupt decoder state");
  }

  std::string_view d_;
  const PickleLimits& lim_;
  std::size_t pos_ = 0;
  std::vector<std::unique_ptr<Node>> arena_;
  std::vector<Node*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, Node*> memo_;
};

// ----- encoder ---------------------------------------------------------------------------

class Encoder {
 public:
  std::string out;

  void value(const PyObject& v, int depth) {
    if (depth > 200) throw ValueError("cannot pickle a value nested deeper than 200 levels");
    std::visit([&](const auto& x) { emit(x, depth); }, v.variant());
  }

 private:
  void u8(unsigned v) { out.push_back(static_cast<char>(v)); }
  void le(std::uint64_t v, int n) {
    for (int k = 0; k < n; ++k) u8(static_cast<unsigned>((v >> (8 * k)) & 0xff));
  }
  void text(unsigned short_op, unsigned op4, unsigned op8, const std::string& s) {
    if (s.size() < 256) {
      u8(short_op);
      le(s.size(), 1);
    } else if (s.size() <= 0xffffffffu) {
      u8(op4);
      le(s.size(), 4);
    } else {
      u8(op8);
      le(s.size(), 8);
    }
    out += s;
  }
  void str(const std::string& s) { text(0x8c, 'X', 0x8d, s); }
  void global(const std::string& module, const std::string& name) {
    str(module);
    str(name);
    u8(0x93);
  }
  void items(const std::vector<PyObject>& v, int depth) {
    for (const auto& x : v) value(x, depth + 1);
  }
  void long1(const std::string& le_bytes) {
    if (le_bytes.size() < 256) {
      u8(0x8a);
      le(le_bytes.size(), 1);
    } else {
      u8(0x8b);
      le(le_bytes.size(), 4);
    }
    out += le_bytes;
  }

  void emit(const None&, int) { u8('N'); }
  void emit(bool b, int) { u8(b ? 0x88 : 0x89); }
  void emit(std::int64_t i, int) {
    if (i >= 0 && i < 256) {
      u8('K');
      le(static_cast<std::uint64_t>(i), 1);
    } else if (i >= 0 && i < 65536) {
      u8('M');
      le(static_cast<std::uint64_t>(i), 2);
    } else if (i >= INT32_MIN && i <= INT32_MAX) {
      u8('J');
      le(static_cast<std::uint32_t>(static_cast<std::int32_t>(i)), 4);
    } else {
      std::string b;
      auto u = static_cast<std::uint64_t>(i);
      for (int k = 0; k < 8; ++k) b.push_back(static_cast<char>((u >> (8 * k)) & 0xff));
      while (b.size() > 1) {
        auto last = static_cast<unsigned char>(b.back());
        auto prev = static_cast<unsigned char>(b[b.size() - 2]);
        if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80)))
          b.pop_back();
        else
          break;
      }
      long1(b);
    }
  }
  void emit(const BigInt& b, int) { long1(b.le_bytes); }
  void emit(double d, int) {
    u8('G');
    auto u = std::bit_cast<std::uint64_t>(d);
    for (int k = 7; k >= 0; --k) u8(static_cast<unsigned>((u >> (8 * k)) & 0xff));
  }
  void emit(const std::string& s, int) { str(s); }
  void emit(const Bytes& b, int) { text('C', 'B', 0x8e, b.data); }
  void emit(const ByteArray& b, int) {
    global("builtins", "bytearray");
    text('C', 'B', 0x8e, b.data);
    u8(0x85);
    u8('R');
  }
  void emit(const Tuple& t, int depth) {
    std::size_t n = t.items.size();
    if (n == 0) {
      u8(')');
    } else if (n <= 3) {
      items(t.items, depth);
      u8(0x84 + static_cast<unsigned>(n));
    } else {
      u8('(');
      items(t.items, depth);
      u8('t');
    }
  }
  void emit(const List& l, int depth) {
    u8(']');
    if (l.items.empty()) return;
    u8('(');
    items(l.items, depth);
    u8('e');
  }
  void emit(const Dict& d, int depth) {
    u8('}');
    if (d.items.empty()) return;
    u8('(');
    for (const auto& [k, v] : d.items) {
      value(k, depth + 1);
      value(v, depth + 1);
    }
    u8('u');
  }
  void emit(const Set& s, int depth) {
    if (s.frozen) {
      u8('(');
      items(s.items, depth);
      u8(0x91);
      return;
    }
    u8(0x8f);
    if (s.items.empty()) return;
    u8('(');
    items(s.items, depth);
    u8(0x90);
  }
  void emit(const ExceptionValue& e, int depth) {
    std::string module = e.module == "_queue" ? "queue" : e.module;
    if (!is_allowed_exception(module, e.name))
      throw ValueError("cannot pickle the exception " + e.module + "." + e.name +
                       ": only queue.Empty, queue.Full and builtins exceptions are sent");
    global(module, e.name);
    emit(Tuple{e.args}, depth);
    u8('R');
    if (!e.state.empty()) {
      emit(Dict{e.state}, depth);
      u8('b');
    }
  }
  void emit(const Slice& sl, int) {
    global("builtins", "slice");
    for (const auto* b : {&sl.start, &sl.stop, &sl.step}) {
      if (*b)
        emit(**b, 0);
      else
        u8('N');
    }
    u8(0x87);
    u8('R');
  }
  void emit(const Token& t, int) {
    global("multiprocessing.managers", "Token");
    u8(')');
    u8(0x81);
    str(t.typeid_);
    if (t.port < 0) {
      str(t.host);
    } else {
      str(t.host);
      emit(t.port, 0);
      u8(0x86);
    }
    str(t.id);
    u8(0x87);
    u8('b');
  }
};

}  // namespace

PyObject unpickle(std::string_view data, const PickleLimits& limits) {
  return Decoder(data, limits).run();
}

std::string pickle(const PyObject& v) {
  Encoder e;
  e.out = "\x80\x04";
  e.value(v, 0);
  e.out.push_back('.');
  return std::move(e.out);
}

}  // namespace mpp::net
