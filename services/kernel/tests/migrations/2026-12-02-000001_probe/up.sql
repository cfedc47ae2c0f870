-- A schema for the kernel's tests of `migrate` and of the checks at start.
CREATE TABLE probe (id INT PRIMARY KEY);
