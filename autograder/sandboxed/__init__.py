"""Code that runs inside the sandbox, beside student code: the child's entry point
(:mod:`.child`), the wire format (:mod:`.wire`) and the probes (:mod:`.probes`,
``probes_<topic>.py``).

Trust boundary: nothing here imports the grader side (``autograder.*`` outside this
package); only the standard library, numpy, torch, torchvision and the runtime
package ``rcnn_kit``. The grader copies this package into each child's harness folder
(as :data:`HARNESS_PACKAGE`) and imports it itself only to start children, to speak the
wire format and to run the same probes on the reference.
"""

#: Name of this package inside a child's harness folder.
HARNESS_PACKAGE = "rcnn_sandboxed"
