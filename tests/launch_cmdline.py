"""Reads launch/perception.launch.py without launch_ros (not installable here) and turns its
Node action into the command line launch_ros would run, so the tests and the demo start the
node with exactly the arguments the launch file passes.

Dictionary parameters become `-p name:=value` (launch_ros writes them to a temporary
parameters file; the effect on the node is the same).
"""
import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / 'launch' / 'perception.launch.py'
INSTALL = ROOT / '.ws' / 'install' / 'perception'
SHARE = INSTALL / 'share' / 'perception'


def _call_name(node):
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return ast.unparse(func)
    return None


class LaunchFile:
    def __init__(self, path=LAUNCH_FILE):
        self.tree = ast.parse(Path(path).read_text(), filename=str(path))
        calls = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)]
        self.declared = {}
        for call in calls:
            if _call_name(call) == 'DeclareLaunchArgument':
                name = call.args[0].value
                kw = {k.arg: k.value for k in call.keywords}
                self.declared[name] = kw.get('default_value')
        nodes = [c for c in calls if _call_name(c) == 'Node']
        if len(nodes) != 1:
            raise ValueError(f'{path}: expected one Node action, found {len(nodes)}')
        self.node = {k.arg: k.value for k in nodes[0].keywords}

    def used_configurations(self):
        return {c.args[0].value for c in ast.walk(self.tree)
                if isinstance(c, ast.Call) and _call_name(c) == 'LaunchConfiguration'}

    def literal(self, key):
        return ast.literal_eval(self.node[key])

    def _eval(self, node, args, share):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id == 'share':
            return str(share)
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name == 'LaunchConfiguration':
                key = node.args[0].value
                if key in args:
                    return str(args[key])
                return self._eval(self.declared[key], args, share)
            if name == 'os.path.join':
                return os.path.join(*(self._eval(a, args, share) for a in node.args))
        raise ValueError(f'cannot evaluate {ast.unparse(node)} in the launch file')

    def ros_arguments(self, share=SHARE, **args):
        """`--ros-args ...` for launch arguments `args` (others take their defaults)."""
        unknown = set(args) - set(self.declared)
        if unknown:
            raise ValueError(f'launch file declares no argument {sorted(unknown)}')
        out = ['--ros-args', '-r', f'__node:={self.literal("name")}']
        namespace = self._eval(self.node['namespace'], args, share)
        if namespace:
            out += ['-r', f'__ns:=/{namespace.strip("/")}']
        for item in self.node['parameters'].elts:
            if isinstance(item, ast.Dict):
                for key, value in zip(item.keys, item.values):
                    out += ['-p', f'{key.value}:={self._eval(value, args, share)}']
            else:
                out += ['--params-file', self._eval(item, args, share)]
        for pair in self.node['remappings'].elts:
            src, dst = (self._eval(e, args, share) for e in pair.elts)
            out += ['-r', f'{src}:={dst}']
        return out

    def command(self, install=INSTALL, **args):
        package, executable = self.literal('package'), self.literal('executable')
        exe = Path(install) / 'lib' / package / executable
        return [str(exe)] + self.ros_arguments(share=Path(install) / 'share' / package, **args)
