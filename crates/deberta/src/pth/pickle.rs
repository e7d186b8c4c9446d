//! A pickle machine for the subset `torch.save(state_dict)` writes (protocol 2, also the
//! protocol-4 framing opcodes), in the spirit of `torch.load(weights_only=True)`: the only
//! callables it runs are `collections.OrderedDict` and torch's tensor rebuild functions, and
//! storages come in through persistent ids.
//!
//! Every object lives in one flat arena and containers hold arena indices, so a memo reference
//! (`BINGET`) costs one index however large the object ("billion laughs" stays linear), nothing
//! is ever deep-cloned, and nothing recurses (deep nesting cannot overflow the stack, not even
//! when the arena is dropped). Counts are capped by [`Limits`].
//!
//! Opcodes per CPython's `Lib/pickletools.py`; the tensor calls per PyTorch's
//! `torch/_utils.py` (`_rebuild_tensor_v2`, `_rebuild_parameter`, `_rebuild_from_type_v2`) and
//! `torch/serialization.py` (`persistent_id`).

use std::collections::HashMap;

use super::{Dtype, PthError, TensorInfo};

/// Caps on what a pickle may build.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Objects created (each opcode creates at most one).
    pub max_objects: usize,
    /// Memo entries.
    pub max_memo: usize,
    /// Values on the stack at once.
    pub max_stack: usize,
    /// Open `MARK`s at once.
    pub max_marks: usize,
    /// Nesting of containers in containers.
    pub max_depth: u32,
    /// Dimensions of one tensor.
    pub max_ndim: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_objects: 4_000_000,
            max_memo: 1_000_000,
            max_stack: 1_000_000,
            max_marks: 1_000,
            max_depth: 64,
            max_ndim: 16,
        }
    }
}

type Id = usize;

#[derive(Debug)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(String, String),
    Storage(Storage),
    Tensor(TensorInfo),
}

#[derive(Debug, Clone)]
struct Storage {
    dtype: Dtype,
    key: String,
    numel: u64,
}

impl Obj {
    fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) => "int",
            Obj::Float => "float",
            Obj::Str(_) => "str",
            Obj::Bytes => "bytes",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Global(..) => "global",
            Obj::Storage(_) => "storage",
            Obj::Tensor(_) => "tensor",
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    limits: Limits,
    objects: Vec<(Obj, u32)>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

/// Runs the pickle `data` and returns the tensors of the dict it builds, in order.
pub fn state_dict(data: &[u8], limits: Limits) -> Result<Vec<(String, TensorInfo)>, PthError> {
    let mut m = Machine {
        data,
        pos: 0,
        limits,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let top = m.run()?;
    let Obj::Dict(items) = m.obj(top) else {
        return Err(PthError::pickle(
            m.pos,
            format!(
                "the pickle holds a {}, not a state dict of tensors",
                m.obj(top).kind()
            ),
        ));
    };
    let mut out: Vec<(String, TensorInfo)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for &(k, v) in items {
        let Obj::Str(name) = m.obj(k) else {
            return Err(PthError::pickle(
                m.pos,
                format!("state dict key is a {}, not a string", m.obj(k).kind()),
            ));
        };
        match m.obj(v) {
            Obj::Tensor(info) => match seen.get(name) {
                Some(&i) => {
                    if let Some(slot) = out.get_mut(i) {
                        slot.1 = info.clone();
                    }
                }
                None => {
                    seen.insert(name.clone(), out.len());
                    out.push((name.clone(), info.clone()));
                }
            },
            other => {
                tracing::debug!(name = %name, kind = other.kind(), "non-tensor state dict entry skipped");
            }
        }
    }
    Ok(out)
}

impl Machine<'_> {
    fn obj(&self, id: Id) -> &Obj {
        // Ids only come from `push_obj`, so they are always in range.
        self.objects.get(id).map(|o| &o.0).unwrap_or(&Obj::None)
    }

    fn depth(&self, id: Id) -> u32 {
        self.objects.get(id).map(|o| o.1).unwrap_or(0)
    }

    fn err(&self, reason: impl Into<String>) -> PthError {
        PthError::pickle(self.pos, reason)
    }

    fn new_obj(&mut self, obj: Obj, depth: u32) -> Result<Id, PthError> {
        if self.objects.len() >= self.limits.max_objects {
            return Err(PthError::limit(
                "pickle objects",
                self.objects.len() as u64 + 1,
                self.limits.max_objects as u64,
            ));
        }
        if depth > self.limits.max_depth {
            return Err(PthError::limit(
                "pickle nesting depth",
                u64::from(depth),
                u64::from(self.limits.max_depth),
            ));
        }
        self.objects.push((obj, depth));
        Ok(self.objects.len() - 1)
    }

    fn push_id(&mut self, id: Id) -> Result<(), PthError> {
        if self.stack.len() >= self.limits.max_stack {
            return Err(PthError::limit(
                "pickle stack size",
                self.stack.len() as u64 + 1,
                self.limits.max_stack as u64,
            ));
        }
        self.stack.push(id);
        Ok(())
    }

    fn push(&mut self, obj: Obj) -> Result<(), PthError> {
        let id = self.new_obj(obj, 0)?;
        self.push_id(id)
    }

    /// Pushes a container of `children`, one deeper than the deepest of them.
    fn push_container(
        &mut self,
        children: &[Id],
        make: impl FnOnce() -> Obj,
    ) -> Result<(), PthError> {
        let depth = children.iter().map(|&c| self.depth(c)).max().unwrap_or(0) + 1;
        let id = self.new_obj(make(), depth)?;
        self.push_id(id)
    }

    fn pop(&mut self) -> Result<Id, PthError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("pop across a MARK"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<Id, PthError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err("stack underflow"))
    }

    /// Pops everything down to the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Id>, PthError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK to pop to"))?;
        if mark > self.stack.len() {
            return Err(self.err("MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PthError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                PthError::pickle(start, format!("argument of {n} bytes runs past the end"))
            })?;
        self.pos = end;
        Ok(&self.data[start..end])
    }

    fn u8(&mut self) -> Result<u8, PthError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PthError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PthError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PthError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<String, PthError> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let n = rest
            .iter()
            .take(4096)
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("text argument without a newline within 4096 bytes"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: u64) -> Result<(), PthError> {
        let n = usize::try_from(n).map_err(|_| self.err("string length overflows"))?;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.push(Obj::Str(s))
    }

    fn long(&mut self, n: usize) -> Result<(), PthError> {
        let b = self.take(n)?;
        if n > 8 && !b[8..].iter().all(|&x| x == 0 || x == 0xff) {
            return Err(self.err(format!("integer of {n} bytes does not fit 64 bits")));
        }
        let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
        let mut a = [if negative { 0xff } else { 0 }; 8];
        let k = n.min(8);
        a[..k].copy_from_slice(&b[..k]);
        self.push(Obj::Int(i64::from_le_bytes(a)))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PthError> {
        let id = self.top()?;
        if !self.memo.contains_key(&key) && self.memo.len() >= self.limits.max_memo {
            return Err(PthError::limit(
                "pickle memo entries",
                self.memo.len() as u64 + 1,
                self.limits.max_memo as u64,
            ));
        }
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PthError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.push_id(id)
    }

    fn run(&mut self) -> Result<Id, PthError> {
        loop {
            let at = self.pos;
            let op = self
                .u8()
                .map_err(|_| PthError::pickle(at, "ends without STOP"))?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= self.limits.max_marks {
                        return Err(PthError::limit(
                            "open pickle MARKs",
                            self.marks.len() as u64 + 1,
                            self.limits.max_marks as u64,
                        ));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.push_id(id)?;
                }
                b'N' => self.push(Obj::None)?,
                0x88 => self.push(Obj::Bool(true))?,
                0x89 => self.push(Obj::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Obj::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    self.long(n)?;
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    self.long(n)?;
                }
                b'I' | b'L' => {
                    let text = self.line()?;
                    let v = match text.trim_end_matches('L') {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        t => Obj::Int(
                            t.parse()
                                .map_err(|_| self.err(format!("bad integer `{t}`")))?,
                        ),
                    };
                    self.push(v)?;
                }
                b'G' => {
                    self.u64()?;
                    self.push(Obj::Float)?;
                }
                b'X' => {
                    let n = self.u32()?;
                    self.string(u64::from(n))?;
                }
                0x8c => {
                    let n = self.u8()?;
                    self.string(u64::from(n))?;
                }
                0x8d => {
                    let n = self.u64()?;
                    self.string(n)?;
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Obj::Bytes)?;
                }
                b'U' | b'C' => {
                    let n = usize::from(self.u8()?);
                    self.take(n)?;
                    self.push(Obj::Bytes)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Obj::Global(module, name))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (self.obj(module), self.obj(name)) {
                        (Obj::Str(m), Obj::Str(n)) => {
                            let g = Obj::Global(m.clone(), n.clone());
                            self.push(g)?;
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b')' => self.push_container(&[], || Obj::Tuple(Vec::new()))?,
                b']' => self.push_container(&[], || Obj::List(Vec::new()))?,
                b'}' => self.push_container(&[], || Obj::Dict(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_container(&items.clone(), || Obj::Tuple(items))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_container(&items.clone(), || Obj::List(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items).ok_or_else(|| self.err("DICT of an odd count"))?;
                    self.push_container(&items, || Obj::Dict(pairs))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_container(&items.clone(), || Obj::Tuple(items))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend(vec![item], false)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend(items, false)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend(vec![k, v], true)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend(items, true)?;
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(u64::from(k))?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(u64::from(k))?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let k = line.parse().map_err(|_| self.err("bad PUT index"))?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(u64::from(k))?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(u64::from(k))?;
                }
                b'g' => {
                    let line = self.line()?;
                    let k = line.parse().map_err(|_| self.err("bad GET index"))?;
                    self.memo_get(k)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push(Obj::Storage(storage))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let obj = self.reduce(func, args)?;
                    let depth = self.depth(args) + 1;
                    let id = self.new_obj(obj, depth)?;
                    self.push_id(id)?;
                }
                b'b' => {
                    // BUILD: the state (a tensor's or OrderedDict's attributes) is not needed.
                    self.pop()?;
                    self.top()?;
                }
                other => {
                    return Err(PthError::pickle(
                        at,
                        format!(
                            "opcode 0x{other:02x} is not part of what torch.save writes for a \
                             state dict"
                        ),
                    ))
                }
            }
        }
    }

    /// APPEND(S) into the list or SETITEM(S) into the dict below the popped values.
    fn extend(&mut self, items: Vec<Id>, dict: bool) -> Result<(), PthError> {
        let target = self.top()?;
        let child = items.iter().map(|&c| self.depth(c)).max().unwrap_or(0) + 1;
        if child > self.limits.max_depth {
            return Err(PthError::limit(
                "pickle nesting depth",
                u64::from(child),
                u64::from(self.limits.max_depth),
            ));
        }
        let pairs_of = if dict {
            Some(pairs(&items).ok_or_else(|| self.err("SETITEMS of an odd count"))?)
        } else {
            None
        };
        let Some(slot) = self.objects.get_mut(target) else {
            return Err(self.err("stack underflow"));
        };
        slot.1 = slot.1.max(child);
        match (&mut slot.0, pairs_of) {
            (Obj::List(list), None) => list.extend(items),
            (Obj::Dict(map), Some(pairs)) => map.extend(pairs),
            (other, _) => {
                let kind = other.kind();
                return Err(self.err(format!(
                    "{} into a {kind}",
                    if dict { "SETITEM" } else { "APPEND" }
                )));
            }
        }
        Ok(())
    }

    fn tuple(&self, id: Id, what: &str) -> Result<&[Id], PthError> {
        match self.obj(id) {
            Obj::Tuple(items) => Ok(items),
            other => Err(self.err(format!("{what} is a {}, not a tuple", other.kind()))),
        }
    }

    fn int(&self, id: Id, what: &str) -> Result<i64, PthError> {
        match self.obj(id) {
            Obj::Int(v) => Ok(*v),
            Obj::Bool(b) => Ok(i64::from(*b)),
            other => Err(self.err(format!("{what} is a {}, not an int", other.kind()))),
        }
    }

    fn arg(&self, args: &[Id], i: usize, call: &str) -> Result<Id, PthError> {
        args.get(i).copied().ok_or_else(|| {
            self.err(format!(
                "{call} called with {} arguments; argument {} is missing",
                args.len(),
                i + 1
            ))
        })
    }

    /// `('storage', torch.<Type>Storage, key, location, numel)`.
    fn persistent_load(&self, pid: Id) -> Result<Storage, PthError> {
        let t = self.tuple(pid, "persistent id")?;
        let call = "persistent id";
        let tag = self.arg(t, 0, call)?;
        if !matches!(self.obj(tag), Obj::Str(s) if s == "storage") {
            return Err(self.err("persistent id is not a ('storage', ...) tuple"));
        }
        let dtype = match self.obj(self.arg(t, 1, call)?) {
            Obj::Global(m, n) if m == "torch" => Dtype::from_storage(n)
                .ok_or_else(|| self.err(format!("unsupported storage type torch.{n}")))?,
            other => {
                return Err(self.err(format!(
                    "storage type is a {}, not a torch storage class",
                    other.kind()
                )))
            }
        };
        let key = match self.obj(self.arg(t, 2, call)?) {
            Obj::Str(s) => s.clone(),
            other => return Err(self.err(format!("storage key is a {}", other.kind()))),
        };
        let numel = self.int(self.arg(t, 4, call)?, "storage size")?;
        let numel = u64::try_from(numel)
            .map_err(|_| self.err(format!("storage `{key}` has negative size {numel}")))?;
        Ok(Storage { dtype, key, numel })
    }

    fn reduce(&self, func: Id, args: Id) -> Result<Obj, PthError> {
        let Obj::Global(module, name) = self.obj(func) else {
            return Err(self.err(format!(
                "REDUCE of a {}, not an allowed callable",
                self.obj(func).kind()
            )));
        };
        let args = self.tuple(args, &format!("the arguments of {module}.{name}"))?;
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => {
                if !args.is_empty() {
                    return Err(self.err("collections.OrderedDict called with arguments"));
                }
                Ok(Obj::Dict(Vec::new()))
            }
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                self.rebuild_tensor(args, name).map(Obj::Tensor)
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => {
                match self.obj(self.arg(args, 0, name)?) {
                    Obj::Tensor(t) => Ok(Obj::Tensor(t.clone())),
                    other => {
                        Err(self.err(format!("{name}: data is a {}, not a tensor", other.kind())))
                    }
                }
            }
            ("torch._utils", "_rebuild_from_type_v2") => {
                let inner = self.arg(args, 0, name)?;
                let inner_args = self.arg(args, 2, name)?;
                match self.obj(inner) {
                    Obj::Global(m, n)
                        if m == "torch._utils"
                            && (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor") =>
                    {
                        let a = self.tuple(inner_args, "_rebuild_from_type_v2 arguments")?;
                        self.rebuild_tensor(a, n).map(Obj::Tensor)
                    }
                    _ => Err(self.err(
                        "_rebuild_from_type_v2 of anything but _rebuild_tensor_v2 is not supported",
                    )),
                }
            }
            _ => Err(self.err(format!(
                "the pickle calls {module}.{name}; only collections.OrderedDict and torch's \
                 tensor rebuild functions are allowed (no code runs from a checkpoint)"
            ))),
        }
    }

    /// `(storage, storage_offset, size, stride, ...)`.
    fn rebuild_tensor(&self, args: &[Id], call: &str) -> Result<TensorInfo, PthError> {
        let storage = match self.obj(self.arg(args, 0, call)?) {
            Obj::Storage(s) => s.clone(),
            other => {
                return Err(self.err(format!("{call}: storage is a {}", other.kind())));
            }
        };
        let offset = self.int(self.arg(args, 1, call)?, "storage offset")?;
        let offset = u64::try_from(offset)
            .map_err(|_| self.err(format!("{call}: negative storage offset {offset}")))?;
        let dims = |i: usize, what: &str| -> Result<Vec<u64>, PthError> {
            let t = self.tuple(self.arg(args, i, call)?, what)?;
            if t.len() > self.limits.max_ndim {
                return Err(PthError::limit(
                    "tensor dimensions",
                    t.len() as u64,
                    self.limits.max_ndim as u64,
                ));
            }
            t.iter()
                .map(|&d| {
                    let v = self.int(d, what)?;
                    u64::try_from(v).map_err(|_| self.err(format!("{call}: negative {what} {v}")))
                })
                .collect()
        };
        let shape = dims(2, "size")?;
        let stride = dims(3, "stride")?;
        if shape.len() != stride.len() {
            return Err(self.err(format!(
                "{call}: size has {} dimensions, stride {}",
                shape.len(),
                stride.len()
            )));
        }
        Ok(TensorInfo {
            dtype: storage.dtype,
            storage: storage.key,
            storage_numel: storage.numel,
            offset,
            shape,
            stride,
        })
    }
}

fn pairs(items: &[Id]) -> Option<Vec<(Id, Id)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    Some(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}
